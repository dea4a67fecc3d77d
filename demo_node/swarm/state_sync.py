"""Parameter transfer between peers: a node that joins, or whose digest differs from the majority's, downloads a
peer's parameters (streamed in chunks) and checks them against the digest the peer announced."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from demo_node.net.transport import Stream, Transport
from demo_node.swarm.limits import LIMITS, Limits
from demo_node.swarm.plan import Member
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    next_round: int
    """The first round whose update is not in these parameters."""
    digest: bytes
    members: list[Member]
    """Members of ``next_round``."""
    tensors: list[bytes]
    run_config: str


class StateError(RuntimeError):
    pass


class StateServer:
    """Serves snapshots that ``provide`` produces (the training thread makes them at a safe point)."""

    def __init__(self, transport: Transport, provide: Callable[[int], Awaitable[Snapshot | None]],
                 limits: Limits = LIMITS):
        self.transport, self.provide, self.limits = transport, provide, limits

    async def start(self) -> None:
        await self.transport.serve("state", self._on_state)

    async def _on_state(self, stream: Stream) -> None:
        req = spb.StateRequest.FromString(await stream.recv(limit=self.limits.small_message))
        snap = await self.provide(req.min_round)
        if snap is None:
            await stream.send(spb.StateHeader(error="no state to serve yet").SerializeToString())
            return
        header = spb.StateHeader(round=snap.next_round, digest=snap.digest, run_config=snap.run_config,
                                 tensor_bytes=[len(t) for t in snap.tensors])
        header.members.extend(spb.Presence(peer=m.peer, client=m.client) for m in snap.members)
        await stream.send(header.SerializeToString())
        chunk = self.limits.state_chunk
        for blob in snap.tensors:
            for offset in range(0, len(blob), chunk):
                await stream.send(blob[offset : offset + chunk])


async def fetch_state(transport: Transport, peer: bytes, min_round: int, limits: Limits = LIMITS) -> Snapshot:
    """Download a peer's snapshot (not checked here: the caller compares its digest)."""
    timeout = limits.state_read_timeout
    stream = await asyncio.wait_for(transport.open(peer, "state"), timeout)
    try:
        await stream.send(spb.StateRequest(min_round=max(0, min_round)).SerializeToString())
        header = spb.StateHeader.FromString(await asyncio.wait_for(stream.recv(limit=limits.state_header), timeout))
        if header.error:
            raise StateError(header.error)
        tensors = []
        for size in header.tensor_bytes:
            buf = bytearray()
            while len(buf) < size:
                buf += await asyncio.wait_for(stream.recv(limit=limits.state_chunk), timeout)
            if len(buf) != size:
                raise StateError(f"tensor of {len(buf)} bytes, announced {size}")
            tensors.append(bytes(buf))
        members = [Member(p.peer, p.client) for p in header.members]
        return Snapshot(int(header.round), header.digest, members, tensors, header.run_config)
    finally:
        await stream.close()
