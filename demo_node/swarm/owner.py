"""One shard of one round, as its owner runs it: collect contributions, close, answer with the shard's result.

The owner closes when every member of the round has reached it (with a contribution or without one) or when the
deadline after the first arrival has passed; whatever arrives after that is too late for this round. The result
(who was included, who was present, who joins and leaves, and the update) is fixed at close, and every requester
gets the same bytes (in relay mode, minus the requester's own payload, which it has).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.swarm.config import RELAY
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.plan import RoundPlan
from demo_node.wire.codec import decode
from demo_node.wire.errors import PayloadError, refusal_code
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)

PackedSignsFn = Callable[[list[Contribution], dict[int, tuple[int, int]]], Awaitable[tuple[bytes, bytes]]]
"""The shard's update from its contributions, as (sign bits, nonzero-block bits) of the owner's blocks."""


@dataclass
class Arrival:
    payload: bytes
    contribution: Contribution


class OwnerRound:
    def __init__(self, plan: RoundPlan, me: bytes, layout: Layout, run_id: str, deadline: float,
                 packed_signs: PackedSignsFn, counters: SwarmCounters):
        self.plan, self.me, self.layout, self.run_id = plan, me, layout, run_id
        self.round = plan.round
        self.ranges = plan.owner_ranges(me)
        self.deadline = deadline
        self.packed_signs, self.counters = packed_signs, counters
        self.arrivals: dict[bytes, Arrival] = {}
        self.present: dict[bytes, spb.Presence] = {}
        self.joiners: dict[bytes, spb.Presence] = {}
        self.leavers: set[bytes] = set()
        self.refusals: dict[bytes, str] = {}
        self.opened = time.monotonic()
        self.first_arrival: float | None = None
        self.first_foreign: float | None = None
        self.last_arrival: float | None = None
        self.closed = asyncio.Event()
        self._result: spb.ShardResult | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    # -- arrivals ----------------------------------------------------------------------------------------------
    def arrive(self, sender: bytes, msg: spb.Contribute, contribution: Contribution | None = None) -> None:
        """Take a member's (or joiner's) request for this round; a late one changes nothing. ``contribution`` is
        this node's own, already restricted to the shard (it need not be decoded from its payload)."""
        if self.closed.is_set() or self._closing:
            if msg.payload:
                self._refuse(sender, "round_closed")
                self.counters.late()
            return
        now = time.monotonic()
        member = sender in self.plan.peers
        if not member and not msg.joining:
            self._refuse(sender, "not_member")
            return
        if self.first_arrival is None:
            self.first_arrival = now
            self._timer = asyncio.get_running_loop().call_later(self.deadline, self._close_soon)
        if sender != self.me and member and msg.payload and self.first_foreign is None:
            self.first_foreign = now  # another member is ready: this node's own wait for its gradient is bounded
        self.last_arrival = now
        presence = spb.Presence(peer=sender, digest_round=msg.digest_round, digest=msg.digest, client=msg.client)
        if member:
            self.present[sender] = presence
        if msg.joining and not member:
            self.joiners[sender] = presence
        if msg.leaving:
            self.leavers.add(sender)
        if msg.payload:
            # every payload is checked (a bad one is counted), but only a member's goes into the update
            if sender == self.me and contribution is not None:
                decoded_contribution = contribution
            else:
                try:
                    decoded = decode(msg.payload, self.layout, run_id=self.run_id, round=self.round,
                                     expect=self.ranges)
                    if decoded.sender != sender:
                        raise PayloadError("sender", "payload of another peer than the stream's")
                    decoded_contribution = decoded.contribution
                except PayloadError as exc:
                    log.warning("round %d: dropped payload from %s: %s", self.round, sender.hex()[:12], exc)
                    self._refuse(sender, exc.reason)
                    decoded_contribution = None
            if member and decoded_contribution is not None:
                self.arrivals[sender] = Arrival(msg.payload, decoded_contribution)
        if self.plan.peers <= self.present.keys():
            self._close_soon()

    def _refuse(self, sender: bytes, reason: str) -> None:
        self.refusals[sender] = reason
        self.counters.refused(reason)

    def _close_soon(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        order = sorted(self.arrivals)
        result = spb.ShardResult(round=self.round, owner=self.me, status=spb.ShardResult.HAVE, mode=self.mode)
        result.included.extend(spb.Included(sender=s, samples=self.arrivals[s].contribution.samples) for s in order)
        result.present.extend(self.present[p] for p in sorted(self.present))
        result.joiners.extend(self.joiners[p] for p in sorted(self.joiners))
        result.leavers.extend(sorted(self.leavers))
        if self.mode != spb.EXCHANGE_RELAY and order and self.ranges:
            try:
                bits, nonzero = await self.packed_signs([self.arrivals[s].contribution for s in order], self.ranges)
                result.sign_bits, result.nonzero_blocks = bits, nonzero
            except Exception:
                # no update for this shard rather than no result: every contributor restores its slice
                log.exception("round %d: computing the shard's signs failed; the shard carries no update", self.round)
                del result.included[:]
        self._result = result
        self.closed.set()

    @property
    def mode(self) -> int:
        return spb.EXCHANGE_RELAY if self.plan.mode == RELAY else spb.EXCHANGE_SIGN

    # -- results -----------------------------------------------------------------------------------------------
    async def result_for(self, requester: bytes) -> bytes:
        """The shard's result as ``requester`` gets it, once the shard is closed."""
        await self.closed.wait()
        assert self._result is not None
        return self.serialize_for(requester)

    def serialize_for(self, requester: bytes) -> bytes:
        assert self._result is not None
        msg = spb.ShardResult()
        msg.CopyFrom(self._result)
        if msg.mode == spb.EXCHANGE_RELAY:
            msg.relayed.extend(b"" if inc.sender == requester else self.arrivals[inc.sender].payload
                               for inc in msg.included)
        if requester in self.refusals:
            msg.refusal = refusal_code(self.refusals[requester])
        return msg.SerializeToString()

    def full_result(self) -> bytes:
        """The result with every relayed payload (what a peer that did not contribute gets)."""
        return self.serialize_for(b"")

    @property
    def spread(self) -> float | None:
        """Seconds between the first and the last arrival: what an adaptive deadline learns from."""
        if self.first_arrival is None or self.last_arrival is None:
            return None
        return self.last_arrival - self.first_arrival
