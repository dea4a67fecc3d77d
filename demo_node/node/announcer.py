"""This node's DHT records while it is in a run: its own peer record (addresses, round, state), refreshed every few
seconds so that a crashed node disappears by itself ("left" when it leaves), and the run's config, refreshed well
within its longer lifetime."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Awaitable, Callable

from demo_node.net.host import peer_from_b58
from demo_node.node.peer import Peer
from demo_node.node.states import NodeState
from demo_node.swarm.discovery import PeerRecord, find_peers, publish_peer, publish_run
from demo_node.limits import LIMITS, Limits

log = logging.getLogger(__name__)


class Announcer:
    def __init__(self, peer: Peer, run_id: str, run_config: str, state: Callable[[], NodeState],
                 round: Callable[[], int], on_peers: Callable[[int], None], limits: Limits = LIMITS,
                 on_beat: Callable[[], Awaitable[None]] | None = None):
        """``on_beat``: run first at every heartbeat (default: refresh how this node is connected to its peers)."""
        self.peer, self.run_id, self.run_config = peer, run_id, run_config
        self.state, self.round, self.on_peers, self.limits = state, round, on_peers, limits
        self.on_beat = on_beat or peer.refresh_paths
        self._task: concurrent.futures.Future | None = None

    def _record(self, state: NodeState) -> PeerRecord:
        p = self.peer
        return PeerRecord(p.peer_id_b58, p.maddrs, p.client, self.round(), state.label)

    async def _beat(self) -> None:
        dht, lim = self.peer.host.dht, self.limits
        clock = asyncio.get_running_loop().time
        run_due = count_due = 0.0
        while True:
            try:
                await self.on_beat()
            except Exception as exc:
                log.debug("heartbeat: %r", exc)
            try:
                await publish_peer(dht, self.run_id, self._record(self.state()), lim.peer_ttl)
                if clock() >= run_due:
                    if await publish_run(dht, self.run_id, self.run_config, lim.run_ttl):
                        run_due = clock() + lim.run_refresh
                if clock() >= count_due:
                    found = await find_peers(dht, self.run_id)
                    for record in found:  # where to dial peers that joined since (see node/direct_paths.py)
                        self.peer.transport.remember(peer_from_b58(record.peer_b58), record.maddrs)
                    self.on_peers(len(found))
                    count_due = clock() + lim.peers_count_every
            except Exception as exc:
                log.warning("DHT heartbeat failed: %r", exc)
            await asyncio.sleep(lim.heartbeat)

    def start(self) -> None:
        self._task = self.peer.host.submit(self._beat())

    def stop(self, left: bool = True) -> None:
        """Stop refreshing; with ``left``, overwrite this node's record with state "left" first."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if left and not self.peer.host.daemon_alive:
            log.warning("p2pd ended before this node left (a supervisor signalled every process of the node at "
                        "once?): its peers learn that it left when its record expires")
        elif left:
            try:
                self.peer.host.call(publish_peer(self.peer.host.dht, self.run_id, self._record(NodeState.LEFT),
                                                 self.limits.peer_ttl), timeout=self.limits.leave_timeout)
            except Exception as exc:
                log.debug("could not mark this peer as left: %r", exc)
