"""How this node reaches the network: bootstrap peers, addresses, identity, NAT (torch- and hivemind-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from demo_node.options import LOCAL, one_of

REACHABILITY = ("auto", "public", "private")


@dataclass(kw_only=True)
class NetworkConfig:
    SECTION = "network"

    peers: list[str] = field(default_factory=list)
    """Multiaddrs (with /p2p/<id>) of peers to join; none starts a new swarm."""
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"])
    """Multiaddrs to listen on (QUIC too: two nodes behind home routers get a direct connection more often over
    QUIC's UDP than over TCP)."""
    announce: list[str] = field(default_factory=list)
    """Multiaddrs to announce to peers (default: what libp2p observes)."""
    identity: str = field(default="", metadata=LOCAL)
    """Private key file: the peer id survives restarts (created, readable by its owner only, if missing)."""
    client_mode: bool = False
    """This node cannot accept connections: it dials out only, contributes, and owns no shard."""
    reachability: str = field(default="auto", metadata=one_of(REACHABILITY))
    """Whether peers can dial this node. auto: ask a few peers to dial it back when it joins (behind a home router
    that forwards nothing, they cannot: it then joins as a node that owns no shard, as in client mode, but keeps
    listening); public / private: skip the probe and take this."""
    nat_port_map: bool = False
    """Ask the home router to forward a port (UPnP / NAT-PMP). Off by default: it sends discovery packets on the LAN."""
    allowlist: str = field(default="", metadata=LOCAL)
    """File of the peer ids (base58, one per line, # comments) this node talks to, for a permissioned run; empty:
    anyone."""
    swarm_key: str = field(default="", metadata=LOCAL)
    """File holding the run's pre-shared secret: a peer is served only after it proved it holds the same one (a
    challenge-response on demo-node's protocols; hivemind's daemon has no libp2p private networks, and the DHT stays
    readable by anyone)."""
