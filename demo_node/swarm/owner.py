"""One shard of one round, as its owner runs it: collect signed contributions, close, answer with a signed result.

The owner closes when every member of the round has reached it (with a contribution or without one) or has gone on
to a later round (a node that restarted or fell behind catches up at once), or when the deadline after the first
arrival has passed; whatever arrives after that is too late for this round. An owner that
no other member reached before it closed includes nothing (its result still passes on statements): whoever gets the
result later applies no update for that shard, the owner included, so an owner cut off from the swarm never trains
alone on its own shard while the others skip it. The result is
fixed at close and signed: which contributions went in (bounded by robust aggregation; a contribution it rejects is
refused to its sender, who gets it back as left out), the statements of the owner's share of the round's peers, and,
in sign exchange, the update's signs, in sparse exchange its cut aggregate. Every requester gets the same signed body
(in relay exchange with the included signed payloads, minus the requester's own, which it has).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.crypto import Identity
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.included import inputs_hash, mask_of
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.shard_update import RECOMPUTED, Update, mode_code, put
from demo_node.swarm.signing import BadSigned, open_payload, sign
from demo_node.wire.codec import decode
from demo_node.wire.errors import PayloadError, refusal_code
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)

ShardUpdateFn = Callable[[RoundPlan, list[Contribution], dict[int, tuple[int, int]]], Awaitable[Update]]
"""The shard's update from its contributions, in the plan's exchange mode (see shard_update.py)."""


@dataclass
class Arrival:
    payload: spb.Signed
    contribution: Contribution


def read_payload(signed: spb.Signed, sender: bytes, layout: Layout, run_id: str, round: int,
                 ranges: dict[int, tuple[int, int]]) -> Contribution:
    """A signed payload's contribution, once it is ``sender``'s, of this run and round, for exactly these blocks;
    PayloadError (or BadSigned) otherwise."""
    data = open_payload(signed, sender)
    decoded = decode(data, layout, run_id=run_id, round=round, expect=ranges)
    if decoded.sender != sender:
        raise PayloadError("sender", "a payload that names another sender than its signer")
    return decoded.contribution


class OwnerRound:
    def __init__(self, plan: RoundPlan, me: bytes, identity: Identity, layout: Layout, run_id: str,
                 deadline: float, signs: ShardSigns, shard_update: ShardUpdateFn, counters: SwarmCounters):
        self.plan, self.me, self.identity, self.layout, self.run_id = plan, me, identity, layout, run_id
        self.round = plan.round
        self.ranges = plan.owner_ranges(me)
        self.deadline = deadline
        self.signs, self.shard_update, self.counters = signs, shard_update, counters
        self.arrivals: dict[bytes, Arrival] = {}
        self.statements: dict[bytes, spb.Signed] = {}
        self.present: set[bytes] = set()
        self.gone: set[bytes] = set()
        """Members that have gone on to a later round: they will not come to this one."""
        self.refusals: dict[bytes, str] = {}
        self.opened = time.monotonic()
        self.first_arrival: float | None = None
        self.first_foreign: float | None = None
        self.last_arrival: float | None = None
        self.closed = asyncio.Event()
        self.body: spb.Signed | None = None
        self.included: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    # -- arrivals ----------------------------------------------------------------------------------------------
    def arrive(self, sender: bytes, joining: bool, signed_statement: spb.Signed | None,
               payload: spb.Signed | None, contribution: Contribution | None = None) -> None:
        """Take a member's (or joiner's) request for this round (its statement, when this owner passes it on, was
        checked to be its own); a late one changes nothing. ``contribution`` is this node's own (it need not be read
        back from its payload)."""
        if self.closed.is_set() or self._closing:
            if payload is not None:
                self._refuse(sender, "round_closed")
                self.counters.late()
            return
        member = sender in self.plan.peers
        if not member and not joining:
            self._refuse(sender, "not_member")
            return
        now = time.monotonic()
        if self.first_arrival is None:
            self.first_arrival = now
            self._timer = asyncio.get_running_loop().call_later(self.deadline, self._close_soon)
        if sender != self.me and member and payload is not None and self.first_foreign is None:
            self.first_foreign = now  # another member is ready: this node's own wait for its gradient is bounded
        self.last_arrival = now
        if signed_statement is not None:
            self.statements[sender] = signed_statement
        if member:
            self.present.add(sender)
        if payload is not None:
            # every payload is checked (a bad one is counted), but only a member's goes into the update
            try:
                if contribution is None:
                    contribution = read_payload(payload, sender, self.layout, self.run_id, self.round, self.ranges)
                if member:
                    self.arrivals[sender] = Arrival(payload, contribution)
            except (PayloadError, BadSigned) as exc:
                log.warning("round %d: dropped payload from %s: %s", self.round, sender.hex()[-12:], exc)
                self._refuse(sender, exc.reason)
        self._close_if_complete()

    def passed(self, peer: bytes) -> None:
        """``peer`` has gone on to a later round (it gave this one up): the owner no longer waits for it."""
        if not self._closing and peer not in self.present and peer in self.plan.peers:
            self.gone.add(peer)
            self._close_if_complete()

    def _close_if_complete(self) -> None:
        # this node's own arrival is always awaited (it is never gone): a round closes only once it is open here
        if self.plan.peers <= self.present | self.gone and self.me in self.present:
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
        cut_off = len(self.plan.peers) > 1 and not self.present - {self.me}
        if cut_off:
            log.info("round %d: no other member reached this owner: its shard carries no update", self.round)
        order = [] if cut_off else sorted(self.arrivals)
        contributions = [self.arrivals[s].contribution for s in order]
        screened = self.signs.screen(contributions) if contributions else None
        kept = [] if screened is None else screened.kept
        for i, reason in ({} if screened is None else screened.rejected).items():
            self._refuse(order[i], reason)
        self.included = [order[i] for i in kept]
        body = spb.ShardBody(round=self.round, owner=self.me, mode=self.mode, plan=self.plan.fingerprint)
        self._include(body)
        body.statements.extend(self.statements[p] for p in sorted(self.statements) if self.me in self.plan.shares(p))
        if self.plan.mode in RECOMPUTED and self.included and self.ranges:
            try:
                # the kept contributions with their sample counts: the update's function bounds them again, the same
                # way
                put(body, await self.shard_update(self.plan, [contributions[i] for i in kept], self.ranges))
            except Exception:
                # no update for this shard rather than no result: every contributor restores its slice
                log.exception("round %d: computing the shard's update failed; the shard carries no update", self.round)
                self.included = []
                self._include(body)
        self.body = sign(self.identity, body.SerializeToString())
        self.closed.set()

    def _include(self, body: spb.ShardBody) -> None:
        body.included = mask_of(self.plan.order, self.included)
        body.inputs_hash = inputs_hash([self.arrivals[s].payload for s in self.included])

    @property
    def mode(self) -> int:
        return mode_code(self.plan.mode)

    # -- results -----------------------------------------------------------------------------------------------
    async def result_for(self, requester: bytes) -> bytes:
        """The shard's result as ``requester`` gets it, once the shard is closed."""
        await self.closed.wait()
        return self.serialize_for(requester)

    def serialize_for(self, requester: bytes) -> bytes:
        assert self.body is not None
        msg = spb.ShardResult(status=spb.ShardResult.HAVE, body=self.body)
        if self.mode == spb.EXCHANGE_RELAY:
            msg.relayed.extend(spb.Signed() if s == requester else self.arrivals[s].payload for s in self.included)
        if requester in self.refusals:
            msg.refusal = refusal_code(self.refusals[requester])
        return msg.SerializeToString()

    def full_result(self) -> bytes:
        """The result with every relayed payload (what a peer that did not contribute gets)."""
        return self.serialize_for(b"")

    def inputs(self, senders: list[bytes]) -> list[spb.Signed]:
        """The signed payloads of these senders that this owner holds (empty where it holds none)."""
        return [self.arrivals[s].payload if s in self.arrivals else spb.Signed() for s in senders]

    @property
    def spread(self) -> float | None:
        """Seconds between the first and the last arrival: what an adaptive deadline learns from."""
        if self.first_arrival is None or self.last_arrival is None:
            return None
        return self.last_arrival - self.first_arrival
