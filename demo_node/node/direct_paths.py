"""A member behind a home router owns shards once every other member reaches it directly.

Nobody can open a connection to a private node (its peers' dial-back probes failed), but a connection it opens
carries streams both ways, and two nodes behind routers that keep a port per host (most home routers) get a direct
connection when both dial at once: each router then takes the other's packets for replies (hole punching; QUIC's
retransmitted handshake makes the timing easy). So at every heartbeat a private member dials each member it has
no connection to, at the addresses of its DHT record (a private node's record holds its public address as its
probers saw it, with its own ports: see ``Peer.maddrs``), and looks at how it is connected to each.

Once it held a direct connection to every member of the round for STEADY heartbeats in a row, it says in its next
statements that it can own a shard; once a member has not been directly connected for STEADY heartbeats in a row (a
new member behind a router that changes ports per connection, a connection that dropped for good) it says it
cannot. Alone in a round it keeps its role (a swarm needs an owner, and there is nobody to reach). A relayed connection never
counts: a shard's owner is what every member waits on, and a relay would carry every byte of the shard's result
through a third peer's uplink. Should a member still fail to reach it within a round, the round's own defenses
bench it as they would any owner that does not answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from demo_node.net.host import peer_b58
from demo_node.node.peer import Peer

log = logging.getLogger(__name__)

STEADY = 3
"""Heartbeats in a row with a direct connection to every member before a private member offers to own a shard, and
with one member missing before it stops."""
DIAL_TIMEOUT = 4.0


class DirectPaths:
    def __init__(self, peer: Peer, members: Callable[[], list[bytes]], set_owner: Callable[[bool, str], None]):
        """``members``: the peers of the current round; ``set_owner(owns, why)``: change this node's role."""
        self.peer, self.members, self.set_owner = peer, members, set_owner
        self.steady = 0
        """Heartbeats in a row that speak for the other role than the one held."""
        self.owns = not peer.client

    @property
    def applies(self) -> bool:
        """Only a node that probed itself private and may listen looks for direct paths."""
        cfg = self.peer.config
        return self.peer.reachability.private and not cfg.client_mode and cfg.reachability == "auto"

    async def beat(self) -> None:
        """One heartbeat: refresh how this node is connected, and with ``applies``, dial and maybe change role."""
        if not self.applies:
            await self.peer.refresh_paths()
            return
        others = [p for p in self.members() if p != self.peer.peer_id]
        indirect = [p for p in others if self.peer.paths.get(peer_b58(p)) != "direct"]
        await asyncio.gather(*(self._dial(p) for p in indirect))
        paths = await self.peer.refresh_paths()
        missing = [peer_b58(p) for p in others if paths.get(peer_b58(p)) != "direct"]
        if not others or bool(missing) != self.owns:
            self.steady = 0  # alone, or the role held is the right one
            return
        self.steady += 1
        if self.steady >= STEADY:
            self.steady, self.owns = 0, not self.owns
            owns = self.owns
            why = (f"a direct connection to each of the {len(others)} other members" if owns else
                   f"no direct connection to {len(missing)} of {len(others)} members ({', '.join(missing[:3])})")
            log.info("%s: %s", "owns shards" if owns else "owns no shard", why)
            self.set_owner(owns, why)

    async def _dial(self, peer: bytes) -> None:
        try:
            await self.peer.transport.connect(peer, DIAL_TIMEOUT)
        except Exception as exc:  # behind a router that changes ports, or gone, or no address: it stays unconnected
            log.debug("dialling %s: %r", peer_b58(peer), exc)
