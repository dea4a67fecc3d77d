"""Parameter transfer between peers: a node that joins, or whose digest differs from the majority's, downloads a
peer's parameters (streamed in chunks, each frame capped) with the members' signed statements of that round.

The downloader installs them only when they hash to the digest that most of those members signed, two at least
(:func:`vouched`): one peer cannot make a joiner take parameters that nobody else holds. A server answers each peer
with one transfer at a time and all requesters of one round with one shared snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from demo_node.net.transport import Stream, Transport
from demo_node.limits import LIMITS, Limits
from demo_node.swarm.plan import Member
from demo_node.swarm.signing import BadSigned, open_statement
from demo_node.swarm.standing import Standing
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)
TRANSFERS_PER_MINUTE = 4
"""Snapshots one peer may download from this node per minute (a joiner needs one, a resyncing node one more)."""


@dataclass
class Snapshot:
    next_round: int
    """The first round whose update is not in these parameters."""
    digest: bytes
    members: list[Member]
    """Members of ``next_round``."""
    tensors: list[bytes]
    run_config: str
    statements: list[spb.Signed] = field(default_factory=list)
    """Signed statements of members that report their digest for ``next_round``."""
    standing: Standing = field(default_factory=Standing)
    """The books of who may own shards, as of ``next_round``."""


class StateError(RuntimeError):
    pass


class StateServer:
    """Serves snapshots that ``provide`` produces; a peer gets one transfer at a time."""

    def __init__(self, transport: Transport, provide: Callable[[int], Awaitable[Snapshot | None]],
                 limits: Limits = LIMITS):
        self.transport, self.provide, self.limits = transport, provide, limits
        self._serving: set[bytes] = set()
        self._recent: dict[bytes, deque[float]] = {}

    async def start(self) -> None:
        await self.transport.serve("state", self._on_state, limit=self.limits.small_message,
                                   timeout=self.limits.snapshot_wait + self.limits.state_total_timeout)

    async def _on_state(self, stream: Stream) -> None:
        try:
            req = spb.StateRequest.FromString(await stream.recv())
        except Exception:
            return
        now = time.monotonic()
        recent = self._recent.setdefault(stream.peer, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if stream.peer in self._serving or len(recent) >= TRANSFERS_PER_MINUTE:
            self.transport.accounting.refuse("busy")
            await stream.send(spb.StateHeader(error="busy: one transfer at a time, a few a minute").SerializeToString())
            return
        recent.append(now)
        self._serving.add(stream.peer)
        try:
            snap = await self.provide(req.min_round)
            if snap is None:
                await stream.send(spb.StateHeader(error="no state to serve yet").SerializeToString())
                return
            header = spb.StateHeader(round=snap.next_round, digest=snap.digest, run_config=snap.run_config,
                                     tensor_bytes=[len(t) for t in snap.tensors], demoted=sorted(snap.standing.demoted),
                                     standing=snap.standing.to_proto())
            header.members.extend(spb.Member(peer=m.peer, client=m.client) for m in snap.members)
            header.statements.extend(snap.statements)
            await stream.send(header.SerializeToString())
            chunk = self.limits.state_chunk
            for blob in snap.tensors:
                for offset in range(0, len(blob), chunk):
                    await stream.send(blob[offset : offset + chunk])
        finally:
            self._serving.discard(stream.peer)


async def fetch_state(transport: Transport, peer: bytes, min_round: int, expected_bytes: list[int],
                      limits: Limits = LIMITS,
                      on_header: Callable[[Snapshot], Awaitable[None]] | None = None) -> Snapshot:
    """Download a peer's snapshot; its header must announce exactly ``expected_bytes`` (this model's tensors), so
    nothing larger is ever read. ``on_header`` gets the snapshot without its tensors as soon as the header is read
    (a joiner follows the rounds from there while the tensors come). Not checked here: the caller checks the digest
    and the statements."""
    timeout = limits.state_read_timeout
    stream = await asyncio.wait_for(transport.open(peer, "state"), timeout)
    try:
        await stream.send(spb.StateRequest(min_round=max(0, min_round)).SerializeToString())
        # the server may wait up to snapshot_wait for its node to reach the round and for the statements that
        # vouch for it (two rounds: a minute when a lone founder's rounds run to the deadline)
        header = spb.StateHeader.FromString(await asyncio.wait_for(stream.recv(limit=limits.state_header),
                                                                   limits.snapshot_wait + timeout))
        if header.error:
            raise StateError(header.error[:200])
        if list(header.tensor_bytes) != list(expected_bytes):
            raise StateError("the snapshot's tensors are not this model's")
        members = [Member(p.peer, p.client) for p in header.members]
        if on_header is not None:
            await on_header(Snapshot(int(header.round), header.digest, members, [], header.run_config,
                                     list(header.statements), Standing.from_proto(header.standing, header.demoted)))
        tensors = []
        for size in header.tensor_bytes:
            buf = bytearray()
            while len(buf) < size:
                buf += await asyncio.wait_for(stream.recv(limit=min(limits.state_chunk, size - len(buf))), timeout)
            tensors.append(bytes(buf))
        return Snapshot(int(header.round), header.digest, members, tensors, header.run_config,
                        list(header.statements), Standing.from_proto(header.standing, header.demoted))
    finally:
        await stream.close()


def vouched(snap: Snapshot, run_id: str, need: int = 2, known: set[bytes] | None = None) -> str:
    """Why the snapshot's digest is not vouched for ("" if it is): at least ``need`` distinct members signed it for
    its round, and more of those that signed a digest for that round signed this one than any other. ``need`` comes
    from what the downloader knows, never from the server: 2 once it knows two peers of the run (so the server alone
    cannot vouch for its own state), 1 when the server is the only peer it knows. Only statements of peers in the
    header's members count, and, with ``known``, only of the peers the downloader itself knows in the run: the
    server writes the members list and could make up members of its own, with keys of its own, to vouch for it."""
    members = {m.peer for m in snap.members}
    reports: dict[bytes, bytes] = {}
    conflicting: set[bytes] = set()
    for signed in snap.statements:
        try:
            st = open_statement(signed, run_id=run_id)
        except BadSigned:
            continue
        if st.digest_round != snap.next_round or st.peer not in members:
            continue
        if known is not None and st.peer not in known:
            continue
        if st.peer in reports and reports[st.peer] != st.digest:
            conflicting.add(st.peer)
        reports[st.peer] = st.digest
    for p in conflicting:
        del reports[p]
    agree = sum(d == snap.digest for d in reports.values())
    if agree < need or 2 * agree <= len(reports):
        return (f"{agree} of {len(reports)} members signed this digest for round {snap.next_round}"
                f" (need {need} and most)")
    return ""
