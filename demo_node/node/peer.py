"""This process as a peer of the swarm's network: its libp2p host and DHT node, its framed streams with byte
accounting, the greeting it answers, and the runs it can find.

Make one to look at the runs before building a model (``demo-node join`` adopts a run's config that way), then hand
it to ``SwarmOptimizer(peer=...)``; an optimizer given none makes its own and closes it when it leaves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from google.protobuf.message import DecodeError

from demo_node.net.access import load_allowlist, load_swarm_key
from demo_node.net.accounting import Accounting
from demo_node.net.config import NetworkConfig
from demo_node.net.host import Host, peer_b58, peer_from_b58
from demo_node.net.reachability import PRIVATE, PUBLIC, UNKNOWN, DialBackServer, Reachability, listen_ports, probe
from demo_node.net.transport import Stream, Transport
from demo_node.node.states import NodeState
from demo_node.options import build, fields_of
from demo_node.run_identity import run_id
from demo_node.swarm.discovery import PeerRecord, find_peers, find_runs
from demo_node.limits import GREET_RETRY, LIMITS, Limits
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)


@dataclass
class GreetedPeer(PeerRecord):
    run_config: str = ""
    """The canonical config of the run the peer trains (empty while it is still starting)."""


class Peer:
    def __init__(self, config: NetworkConfig | None = None, limits: Limits = LIMITS, **options: Any):
        base = config or NetworkConfig()
        values = {f.name: getattr(base, f.name) for f in fields_of(NetworkConfig)}
        values.update(options)
        self.config = build(NetworkConfig, values)
        self.limits = limits
        self.accounting = Accounting()
        allowlist, swarm_key = load_allowlist(self.config.allowlist), load_swarm_key(self.config.swarm_key)
        self.host = Host(self.config).start()
        self.transport = Transport(self.host, self.accounting, allowlist=allowlist, swarm_key=swarm_key)
        self._run_config = ""
        self._state_of: Callable[[], NodeState] = lambda: NodeState.STARTING
        self._round_of: Callable[[], int] = lambda: 0
        self._greeted: list[GreetedPeer] | None = None
        self.reachability = self._configured_reachability()
        self._public_guesses: list[str] = []
        self.direct_owner = False
        """A private node that every member reaches directly owns shards all the same (node/direct_paths.py)."""
        self.paths: dict[str, str] = {}
        """Peer (base58) -> "direct" or "relayed": how this node is connected to each peer it is connected to
        (refreshed by :meth:`refresh_paths`)."""
        self.host.call(self.transport.serve("hello", self._on_hello))
        self.host.call(DialBackServer(self.transport).start())

    # -- who this peer is ----------------------------------------------------------------------------------------
    @property
    def peer_id(self) -> bytes:
        return self.host.peer_id

    @property
    def peer_id_b58(self) -> str:
        return self.host.peer_id_b58

    @property
    def maddrs(self) -> list[str]:
        """Addresses others can give as --peers (empty in client mode); a private node adds its public address as its
        probers saw it, with each of its own ports: a router that keeps a host's port (most home routers do) maps
        them there, and a peer behind another such router reaches it by dialling one while it dials back."""
        return self.host.maddrs + self._public_guesses

    @property
    def p2pd_pid(self) -> int | None:
        return self.host.p2pd_pid

    @property
    def client(self) -> bool:
        """Whether this node owns no shard: in client mode, or when peers cannot dial it and not every member of the
        round is directly connected to it."""
        return self.config.client_mode or (self.reachability.private and not self.direct_owner)

    def _configured_reachability(self) -> Reachability:
        if self.config.client_mode:
            return Reachability(PRIVATE, "client mode: this node does not listen")
        if self.config.reachability in (PUBLIC, PRIVATE):
            return Reachability(self.config.reachability, "--reachability " + self.config.reachability)
        return Reachability(UNKNOWN, "not probed yet")

    def learn_reachability(self, probers: list[bytes]) -> Reachability:
        """With ``reachability: auto``, ask some of ``probers`` to dial this node back (see net/reachability.py);
        the answer is kept, logged and returned. A node nobody answers (the first of a swarm) counts as public."""
        if self.reachability.state != UNKNOWN:
            return self.reachability
        ports = listen_ports(self.config.announce + self.maddrs)
        timeout = self.limits.greet_timeout
        found = self.host.call(probe(self.transport, probers, ports, timeout), 3 * timeout)
        self.reachability = found
        if found.private:
            self._public_guesses = public_guesses(self.host.maddrs, found.observed)
        log.info("reachability: %s (%s%s)", found.state, found.how,
                 f"; seen at {', '.join(found.observed)}" if found.observed else "")
        return found

    async def refresh_paths(self) -> dict[str, str]:
        """How this node is connected to each peer right now: "relayed" over a /p2p-circuit connection, else
        "direct" (as libp2p's daemon lists its connections). Runs on the host's loop."""
        infos = await asyncio.wait_for(self.host.p2p.list_peers(), self.limits.greet_timeout)
        paths: dict[str, str] = {}
        for info in infos:  # one entry per connection: a peer with any direct one is reached directly
            peer = info.peer_id.to_base58()
            direct = any("p2p-circuit" not in str(a) for a in info.addrs)
            paths[peer] = "direct" if direct or paths.get(peer) == "direct" else "relayed"
        self.paths = paths
        return paths

    def identify(self, run_config: str, state: Callable[[], NodeState], round: Callable[[], int]) -> None:
        """What greetings are answered with from now on: the run this peer trains (canonical config), and where
        its state and round are read."""
        self._run_config, self._state_of, self._round_of = run_config, state, round

    async def _on_hello(self, stream: Stream) -> None:
        await stream.recv(limit=self.limits.small_message)
        state = self._state_of()
        started = state is not NodeState.STARTING
        reply = spb.Hello(state=state.value, run_config=self._run_config if started else "", maddrs=self.maddrs,
                          client=self.client, round=self._round_of() if started else 0)
        await stream.send(reply.SerializeToString())

    # -- finding runs and peers ----------------------------------------------------------------------------------
    def greeted(self) -> list[GreetedPeer]:
        """The peers given at start (``peers``) that speak demo-node, greeted once. A demo-node that is still
        starting is waited for (its DHT records are not out yet), so a node started next to its bootstrap never
        founds a second swarm; a peer that is no demo-node (a plain hivemind DHT node) is left to the DHT."""
        if self._greeted is None:
            self._greeted = self._greet()
        return self._greeted

    def _greet(self) -> list[GreetedPeer]:
        pending = {}
        for maddr in self.config.peers:
            if "/p2p/" in maddr:
                try:
                    pending[peer_from_b58(maddr.rsplit("/p2p/", 1)[1])] = maddr
                except Exception:
                    log.warning("--peers %s: not a valid peer id", maddr)
        found: dict[bytes, GreetedPeer] = {}
        deadline = time.monotonic() + self.limits.greet_patience
        timeout = self.limits.greet_timeout
        while pending and time.monotonic() < deadline:
            for peer, maddr in list(pending.items()):
                try:
                    data = self.host.call(self.transport.request(peer, "hello", b"hi", timeout,
                                                                 limit=self.limits.small_message), 2 * timeout)
                    reply = spb.Hello.FromString(data)
                    state = NodeState(reply.state)
                except (DecodeError, ValueError, Exception):
                    del pending[peer]  # unreachable, or not a demo-node
                    continue
                found[peer] = GreetedPeer(peer_b58(peer), list(reply.maddrs) or [maddr], reply.client, reply.round,
                                          state.label, reply.run_config)
                if state is not NodeState.STARTING:
                    del pending[peer]
            if pending:
                time.sleep(GREET_RETRY)
        return list(found.values())

    def runs(self) -> dict[str, dict]:
        """Run id -> config of every run announced in the DHT or trained by a greeted peer."""
        runs = self.host.call(find_runs(self.host.dht))
        for g in self.greeted():
            try:
                theirs = json.loads(g.run_config) if g.run_config else None
                if isinstance(theirs, dict):
                    runs.setdefault(run_id(theirs), theirs)
            except (ValueError, TypeError, KeyError):
                log.warning("peer %s announces a malformed run config", g.peer_b58)
        return runs

    def peers_of(self, run: str) -> list[PeerRecord]:
        """Live peers of a run other than this one: the greeted ones first (the user named them), then the DHT's."""
        found = [p for p in self.host.call(find_peers(self.host.dht, run)) if p.peer_b58 != self.peer_id_b58]
        greeted = []
        for g in self.greeted():
            try:
                same = g.run_config and run_id(json.loads(g.run_config)) == run
            except (ValueError, TypeError, KeyError):
                same = False
            if same and g.state != NodeState.STARTING.label:
                greeted.append(g)
        named = {g.peer_b58 for g in greeted}
        for p in greeted:
            self.transport.remember(peer_from_b58(p.peer_b58), p.maddrs)
        for p in found:
            self.transport.remember(peer_from_b58(p.peer_b58), p.maddrs)
        return greeted + [p for p in found if p.peer_b58 not in named]

    def close(self) -> None:
        """Stop the DHT node and the p2pd daemon."""
        self.host.shutdown()


def public_guesses(maddrs: list[str], observed: list[str]) -> list[str]:
    """Each observed public IPv4 address with the TCP and QUIC ports (and peer id) of ``maddrs``."""
    out: list[str] = []
    for maddr in maddrs:
        parts = maddr.split("/")  # ['', 'ip4', ip, 'tcp', port, ...] or [..., 'udp', port, 'quic-v1', ...]
        if len(parts) < 5 or parts[1] != "ip4" or "p2p-circuit" in parts:
            continue
        for ip in observed:
            if ipaddress.ip_address(ip).version == 4 and ipaddress.ip_address(ip).is_global:
                guess = "/".join(["", "ip4", ip, *parts[3:]])
                if guess not in out and guess not in maddrs:
                    out.append(guess)
    return out
