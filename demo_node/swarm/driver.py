"""The round loop on the network thread: open a round, send this node's signed statement and contribution to the
round's owners (with, in verified sign exchange, its payload for the shard each owner verifies), get every shard's
signed result and verdict, and hand the round's outcome to the training side.

Every wait on a peer is short and bounded (:class:`Patience`): once half of the owners answered, the others get a
grace and as long again as those took. A member this node cannot reach at all does not hold up its own shard. What
the round teaches about each owner (a shard nobody got, a withheld input, contributions left out) goes into the
books of :mod:`demo_node.swarm.standing`, which every node keeps alike and plans the next round from.

The loop never waits for the training side longer than the swarm does: if this node's contribution is not ready
when the other members' contributions have started to arrive (plus a grace), it asks for the results without one
and its contribution goes into a later round. When an owner cannot be reached, the node asks the other members for
that shard's result; a member answers "don't have" only once it has itself given up on the owner, and then never
takes that result from the owner any more, so either some member has it and every node that asks gets it, or
nobody applies it (the shard's blocks are skipped alike). Requests from other nodes are served by
:mod:`demo_node.swarm.handlers`; a shard result is checked (and, if need be, recomputed) by
:mod:`demo_node.swarm.checking` before it becomes part of an outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.net.transport import Transport
from demo_node.swarm.asking import fetch_result, inputs_from
from demo_node.swarm.checking import NOT_AUDITED, Checker, Received, Verdict, open_result
from demo_node.swarm.config import DefenseConfig, RoundConfig
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.evidence import Echo
from demo_node.swarm.handlers import Handlers
from demo_node.swarm.included import inputs_hash, omitting
from demo_node.swarm.limits import LIMITS, Limits
from demo_node.swarm.membership import Statements, accusers_of, collect, next_members
from demo_node.swarm.outcome import RoundOutcome, ShardOutcome, restrict
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.patience import Patience
from demo_node.swarm.plan import Member, RoundPlan, make_plan
from demo_node.swarm.retention import Retention
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.signing import MAX_ACCUSED, open_verdict, sign
from demo_node.swarm.standing import OMITTED, SILENT, WITHHELD, Standing
from demo_node.swarm.verifier import VerifierRound
from demo_node.wire.codec import encode, encoded_size, max_payload_bytes
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RunSettings:
    """What the round protocol needs to know of the run and of this node's role in it."""

    run_id: str
    values: str
    """The run's value precision (the payload's size decides the exchange mode)."""
    aggregation: str
    """The run's aggregation rule (owners and verifiers aggregate)."""
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    client: bool = False
    """This node owns no shards."""
    device: torch.device | str = "cpu"
    """Where an owner or verifier aggregates and inverts a shard."""


@dataclass
class Handoff:
    contribution: Contribution
    taken: threading.Event = field(default_factory=threading.Event)
    """Set once a round has taken the contribution (from then on it cannot be withdrawn)."""


class RoundDriver:
    def __init__(self, transport: Transport, layout: Layout, me: bytes, run: RunSettings, rounds: RoundConfig,
                 counters: SwarmCounters, limits: Limits = LIMITS):
        self.transport, self.layout, self.me = transport, layout, me
        self.identity = transport.host.identity
        self.run, self.cfg, self.counters, self.limits = run, rounds, counters, limits
        self.payload_bytes = encoded_size(layout, run.values, run_id=run.run_id)
        self.max_payload = max_payload_bytes(layout)
        self.outcomes: "queue.Queue[RoundOutcome]" = queue.Queue()
        self.members: dict[int, list[Member]] = {}
        self.plans: dict[int, RoundPlan] = {}
        self.owner_rounds: dict[int, OwnerRound] = {}
        self.verifier_rounds: dict[tuple[int, bytes], VerifierRound] = {}
        self.received: dict[tuple[int, bytes], spb.ShardResult] = {}
        self.kept_for_audit: dict[tuple[int, bytes], spb.Signed] = {}
        """(round, owner) -> this node's signed payload for a verified shard, in a run that audits a fraction of
        rounds: served to the shard's verifier when it audits."""
        self.pending: dict[tuple[int, bytes], asyncio.Future] = {}
        self.settling: dict[tuple[int, bytes], asyncio.Future] = {}
        """(round, owner) -> done once this node has that result, from its owner or a peer, or gave up on it."""
        self.verdicts_got: dict[tuple[int, bytes], asyncio.Future] = {}
        """(round, owner) -> the verdict this node got from that shard's verifier (served to members that ask)."""
        self.round_open: dict[int, asyncio.Event] = {}
        self.retention = Retention(limits, layout.num_params, self.payload_bytes)
        self.peer_rounds: dict[bytes, int] = {}
        """Peer -> the round of its latest request to contribute: it is done with every round before that one."""
        self.statements: dict[int, Statements] = {}
        """Round -> the verified statements its results passed on (kept for state transfers)."""
        self.standing = Standing()
        """Who may own shards (see demo_node/swarm/standing.py), as of the round the loop has open."""
        self.standing_at: dict[int, Standing] = {}
        """Round -> the books as that round was planned (for state transfers)."""
        self.round = 0
        """The round the loop has open (or opens next)."""
        self.member = True
        self.listening = False
        """Following the rounds without asking to join: the node's parameters are still downloading (it applies
        these rounds' outcomes once they are in), so it is not counted yet."""
        self._digest: tuple[int, bytes] = (0, b"")
        self._handoff: Handoff | None = None
        self._handoff_event: asyncio.Event | None = None
        self._leave = False
        self._out_of_step: dict[int, dict[bytes, int]] = {}
        """Round -> owner -> the round it said it was at when it refused this one as not its own."""
        self._jump: tuple[int, list[Member], Standing, int] | None = None
        self.epoch = 0
        self._epochs = 0
        self._stopped = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.deadline = rounds.deadline
        self._spreads: list[float] = []
        self._downloading = False
        self._idle = False
        self._ready_after: list[float] = []
        """Seconds from a round's opening to this node's contribution, in the recent rounds it contributed to."""
        d = run.defense
        self.signs = ShardSigns(layout, run.aggregation, run.device, robust=d.robust_aggregation,
                                max_sample_weight=d.max_sample_weight)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="demo-node-shards")
        self.checker = Checker(self)
        self.echo = Echo(self)
        self.handlers = Handlers(self)
        self.finished = threading.Event()
        """Set when the loop has ended (after leaving, or stopped)."""

    # -- lifecycle (network thread) ----------------------------------------------------------------------------
    async def start(self, round: int, members: list[Member], member: bool, standing: Standing | None = None,
                    listening: bool = False) -> None:
        self.round, self.member, self.listening = round, member and not listening, listening
        self.standing = standing.copy() if standing is not None else Standing()
        self.members[round] = sorted(set(members))
        self._handoff_event = asyncio.Event()
        await self.handlers.serve()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopped.set()
        self.echo.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._pool.shutdown(wait=False)

    async def compute(self, fn: Callable[[], object]) -> object:
        """Run shard arithmetic (aggregation, inverse transform) off the network thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    # -- calls from the training side (any thread) -------------------------------------------------------------
    def hand_over(self, contribution: Contribution) -> Handoff:
        """Queue this node's next contribution; it goes into the next round this node opens as a member."""
        handoff = Handoff(contribution)
        self.transport.host.loop.call_soon_threadsafe(self._put, handoff)
        return handoff

    def _put(self, handoff: Handoff) -> None:
        self._handoff = handoff
        assert self._handoff_event is not None
        self._handoff_event.set()

    def withdraw(self, handoff: Handoff, timeout: float = 10.0) -> bool:
        """Take back a handed-over contribution that no round has taken yet; False if a round took it."""

        async def take_back() -> bool:
            if self._handoff is handoff and not handoff.taken.is_set():
                self._handoff = None
                return True
            return False

        if handoff.taken.is_set():
            return False
        return self.transport.host.call(take_back(), timeout)

    def set_digest(self, round: int, digest: bytes) -> None:
        """The digest of this node's parameters after applying round ``round`` - 1 (what its statements report)."""
        self._digest = (round, digest)

    def rejoin(self, round: int, members: list[Member], standing: Standing, listening: bool = False) -> int:
        """Continue from round ``round`` with these members, after the round in progress (a node out of step
        downloads the swarm's state of that round: with ``listening``, it follows the rounds without asking to join
        until :meth:`stop_listening`); the new epoch: outcomes of older epochs come from before the jump."""
        self._epochs += 1
        epoch = self._epochs

        def jump() -> None:
            self._jump = (round, sorted(set(members)), standing.copy(), epoch)
            self.listening = self.listening or listening
            if self._handoff_event is not None:
                self._handoff_event.set()

        self.transport.host.loop.call_soon_threadsafe(jump)
        return epoch

    def stop_listening(self) -> None:
        """The node applies rounds on the swarm's parameters: from the next round on it asks to join (or, still a
        member in the swarm's books, acts as one)."""
        self.transport.host.loop.call_soon_threadsafe(setattr, self, "listening", False)

    def downloading(self, busy: bool) -> None:
        """The training side is (or is no longer) downloading the swarm's state: while it is, no contribution will
        come, and the rounds go on without waiting for one (the owners would wait for this node otherwise)."""
        def set_busy() -> None:
            self._downloading = busy
            if self._handoff_event is not None:
                self._handoff_event.set()

        self.transport.host.loop.call_soon_threadsafe(set_busy)

    def idle(self, waiting: bool) -> None:
        """The training side waits for rounds without stepping (a founder waiting for peers): rounds wait for its
        gradient only ``idle_round`` seconds, not half a deadline, so they stay short and paced."""
        self.transport.host.loop.call_soon_threadsafe(setattr, self, "_idle", waiting)

    def request_leave(self) -> None:
        self.transport.host.loop.call_soon_threadsafe(self._request_leave)

    def _request_leave(self) -> None:
        self._leave = True
        if self._handoff_event is not None:
            self._handoff_event.set()

    # -- the round loop ----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                try:
                    outcome = await self._one_round(self.round)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # nothing a peer sends may end the loop: this round is skipped here (the digest vote repairs it)
                    log.exception("round %d failed on this node; it is skipped here", self.round)
                    outcome = self._empty_outcome(self.round)
                self.outcomes.put(outcome)
                self._evict(self.round)
                if outcome.leaving or (self._leave and not self.member):
                    break  # a member leaves after its leaving round; a node that is no member simply stops
                if self._jump is not None:
                    self.round, members, self.standing, self.epoch = self._jump
                    self.members[self.round] = members
                    self._jump = None
                else:
                    self.round += 1
                self.member = not self.listening and any(m.peer == self.me for m in self.members[self.round])
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("round loop failed")
        finally:
            self.finished.set()

    def _empty_outcome(self, r: int) -> RoundOutcome:
        plan = self.plans.get(r) or self.plan_of(r)
        self.members[r + 1] = list(self.members[r])
        return RoundOutcome(round=r, plan=plan, shards=[ShardOutcome(o, plan.ranges[o], None) for o in plan.owners],
                            contribution=None, next_members=list(self.members[r]),
                            statements=collect(plan, "", {})[0],
                            seconds=0.0, leaving=self._leave and self.member, member=self.member,
                            demoted=set(self.standing.demoted), benched=dict(self.standing.benched), epoch=self.epoch)

    def plan_of(self, r: int) -> RoundPlan:
        self.standing_at[r] = self.standing.copy()
        members = self.standing.roles(self.members[r], r)
        return make_plan(r, members, self.layout, self.payload_bytes, self.cfg.exchange, self.run.defense.verify_shards)

    def patience(self, expected: int, since: float | None = None) -> Patience:
        """How long to wait for ``expected`` answers asked for at once (see demo_node/swarm/patience.py)."""
        return Patience(expected, self.limits.patience_grace, self.limits.patience_share, since)

    async def _one_round(self, r: int) -> RoundOutcome:
        opened = self.retention.opened(r)
        plan = self.plans[r] = self.plan_of(r)
        # a node that jumped back to a downloaded state may have served this round before the jump, under the same
        # plan: what it served stands (the others applied it), so it is kept rather than made again
        served = self.owner_rounds.get(r)
        if self.me in plan.owners and (served is None or served.plan.fingerprint != plan.fingerprint):
            own = self.owner_rounds[r] = OwnerRound(plan, self.me, self.identity, self.layout, self.run.run_id,
                                                    self.deadline, self.signs, self._packed_signs, self.counters)
            for peer in [p for p, at in self.peer_rounds.items() if at > r]:
                own.passed(peer)
        for owner in plan.verified_by(self.me):
            judged = self.verifier_rounds.get((r, owner))
            if judged is None or judged.plan.fingerprint != plan.fingerprint:
                self.verifier_rounds[(r, owner)] = VerifierRound(plan, owner, self.me, self.identity, self.layout,
                                                                 self.run.run_id, self.signs, self.compute,
                                                                 self.run.defense.audit_fraction,
                                                                 self.limits.audit_wait)
        loop = asyncio.get_running_loop()
        for owner in plan.owners:
            self.pending[(r, owner)] = loop.create_future()  # resolved once this node got or gave up on it
        self.round_open.setdefault(r, asyncio.Event()).set()
        handoff = await self._wait_contribution(r, opened)
        contribution = handoff.contribution if handoff is not None else None
        if handoff is not None:
            handoff.taken.set()
        leaving = self._leave and self.member
        statement = self._statement(r, plan, leaving)
        slices, payloads = {}, {}
        if contribution is not None:
            for owner in plan.owners:
                slices[owner] = restrict(contribution, plan.ranges[owner])
                data = encode(slices[owner], self.layout, run_id=self.run.run_id, round=r, sender=self.me)
                payloads[owner] = sign(self.identity, data)
                if self._audited and plan.verifiers.get(owner, self.me) != self.me:
                    self.kept_for_audit[(r, owner)] = payloads[owner]
        # a verifier is an owner too: the payload for the shard it verifies rides on the stream to its own shard,
        # and the verdict comes back on it after the shard's result (one stream per owner, not two)
        asked = loop.time()
        results, verdict_wait = self.patience(len(plan.owners), asked), self.patience(len(plan.verifiers), asked)
        verdict_streams = {o: loop.create_future() for o, v in plan.verifiers.items() if v != self.me}
        asking = {o: asyncio.ensure_future(self._ask_owner(r, plan, o, statement, payloads.get(o), slices.get(o),
                                                           self._verify_part(r, plan, o, payloads, verdict_streams),
                                                           results))
                  for o in plan.owners}
        settled = {o: asyncio.ensure_future(self._settle(r, plan, o, asking[o])) for o in plan.owners}
        self.settling.update({(r, o): t for o, t in settled.items()})
        judging = [asyncio.ensure_future(self._judge(r, o, settled[o])) for o in plan.verified_by(self.me)]
        verdicts = {o: asyncio.ensure_future(self._ask_verifier(r, plan, o, payloads.get(o), slices.get(o),
                                                                verdict_streams.get(o), verdict_wait))
                    for o in plan.verifiers}
        self.verdicts_got.update({(r, o): v for o, v in verdicts.items()})
        shards, refusals = [], {}
        for owner in plan.owners:
            got, source = await settled[owner]
            own = asking[owner].result()
            if own is not None and own.refusal:
                refusals[owner] = own.refusal
            verdict = await verdicts[owner] if owner in verdicts else None
            shards.append(await self.checker.shard(r, plan, owner, got, verdict, source))
        await asyncio.gather(*judging)
        shards = self._hold_to_others(shards)
        # a result that reached nobody but this node passes on nothing here either (its owner included)
        statements, lost = collect(plan, self.run.run_id,
                                   {s.owner: s.body if s.skip != SILENT else None for s in shards})
        for _ in range(statements.rejected):
            self.counters.refused("statement")
        self.statements[r] = statements
        next_members_ = next_members(plan, self.members[r], statements, lost, self.standing)
        self.members[r + 1] = next_members_
        changed = self._learn(r, plan, shards, statements, lost, next_members_)
        if self.cfg.adaptive_deadline and r in self.owner_rounds and self.owner_rounds[r].spread is not None:
            self._adapt(self.owner_rounds[r].spread)
        return RoundOutcome(
            round=r, plan=plan, shards=shards, contribution=contribution, next_members=next_members_,
            statements=statements, seconds=time.monotonic() - opened, leaving=leaving, member=self.member,
            refusals=refusals, demoted=set(self.standing.demoted), benched=dict(self.standing.benched),
            out_of_step=self._step_of(r, plan), epoch=self.epoch, standing_changes=changed,
        )

    @staticmethod
    def _hold_to_others(shards: list[ShardOutcome]) -> list[ShardOutcome]:
        """Skip, on every node alike, the updates of owners whose results left out most of the contributions the
        other results show were on time (see demo_node/swarm/included.py): the round's signed results prove it."""
        cheats = omitting({s.owner: s.senders for s in shards if s.body is not None})
        for s in shards:
            if s.owner in cheats and not s.skip:
                log.warning("round %d: the owner %s left out most of the contributions that were on time: its "
                            "update is not applied", s.body.round, s.owner.hex()[-12:])
                s.skip = OMITTED
        return shards

    def _learn(self, r: int, plan: RoundPlan, shards: list[ShardOutcome], statements: Statements, lost: set[bytes],
               members: list[Member]) -> dict[bytes, str]:
        """What round ``r`` teaches the books (faults, accusations), and accusations to check; the owners whose
        standing changed now."""
        faults: dict[bytes, str] = {}
        if len(lost) < len(plan.owners):  # a node that got no result at all learnt nothing of the owners
            for s in shards:
                if s.body is None and s.source == "none":
                    faults[s.owner] = SILENT
                elif s.skip in (SILENT, WITHHELD, OMITTED):
                    faults[s.owner] = s.skip
            for s in shards:  # a verifier whose verdict nobody heard is as silent as an owner whose result is lost
                if s.unheard and s.owner in plan.verifiers:
                    faults.setdefault(plan.verifiers[s.owner], SILENT)
        changed = self.standing.record_faults(r, plan.owners, faults, members)
        accusers = accusers_of(plan, statements)
        for p in self.standing.demote_accused(accusers, members, r):
            changed[p] = "demoted"
        self.standing.forget({m.peer for m in members} | set(plan.peers))
        self.echo.heard(r, accusers)
        for peer, what in changed.items():
            why = f"its shard failed in rounds in a row, now {faults[peer]}" if peer in faults else \
                "accused with evidence by most members"
            log.warning("round %d: %s is %s (%s)", r, peer.hex()[-12:], what, why)
        return changed

    def _step_of(self, r: int, plan: RoundPlan) -> int:
        """The swarm's round, when most other owners refused round ``r`` as not theirs (else 0)."""
        said = self._out_of_step.pop(r, {})
        others = [o for o in plan.owners if o != self.me]
        if not others or 2 * len(said) <= len(others):
            return 0
        return max(said.values())

    @property
    def _audited(self) -> bool:
        """Whether verifiers audit a drawn fraction of rounds (contributors keep their payloads for them)."""
        return self.run.defense.audit_fraction < 1.0

    @property
    def _joining(self) -> bool:
        return not self.member and not self.listening

    def _statement(self, r: int, plan: RoundPlan, leaving: bool) -> spb.Signed:
        digest_round, digest = self._digest
        st = spb.Statement(peer=self.me, run_id=self.run.run_id, round=r, digest_round=digest_round, digest=digest,
                           client=self.run.client, joining=self._joining, leaving=leaving,
                           plan=plan.fingerprint if self.member else b"",
                           accused=sorted(self.checker.accused)[:MAX_ACCUSED])
        return sign(self.identity, st.SerializeToString())

    async def _packed_signs(self, contributions: list[Contribution], ranges: dict[int, tuple[int, int]]):
        """An owner's shard update in sign exchange, computed off the network thread."""
        return await self.compute(lambda: pack_signs(self.signs.signs(contributions), ranges))

    async def _wait_contribution(self, r: int, opened: float) -> Handoff | None:
        """This node's contribution for round r, or None if it is not ready in time (see the module docstring)."""
        assert self._handoff_event is not None
        lim = self.limits
        while True:
            if self._handoff is not None and not self._handoff.taken.is_set():
                handoff, self._handoff = self._handoff, None
                self._handoff_event.clear()
                self._ready_after = (self._ready_after + [time.monotonic() - opened])[-lim.adaptive_window:]
                return handoff
            if self._leave or not self.member or self._stopped.is_set() or self._downloading:
                return None
            now = time.monotonic()
            limit = opened + (lim.idle_round if self._idle else self.deadline * lim.own_wait_share)
            own = self.owner_rounds.get(r)
            if own is not None and own.first_foreign is not None:
                # the others are ready: wait a little more than it took them, then go on without
                lead = own.first_foreign - opened
                limit = min(limit, own.first_foreign + lim.straggler_grace + lim.straggler_grace_share * lead)
            elif own is None and len(self._ready_after) >= 3:
                # a node that owns no shard does not see the others' contributions arrive: it waits for its own as
                # long as it usually takes, twice over, so a training side that stalls (a download, a hung GPU)
                # does not hold every owner to half a deadline
                usual = sorted(self._ready_after)[len(self._ready_after) // 2]
                limit = min(limit, opened + lim.straggler_grace + 2 * usual)
            if now >= limit:
                return None
            self._handoff_event.clear()
            try:
                await asyncio.wait_for(self._handoff_event.wait(), timeout=min(0.05, limit - now))
            except asyncio.TimeoutError:
                pass

    def _adapt(self, spread: float) -> None:
        """Adaptive deadline: a multiple of the recent arrival spread, within [a floor, the configured deadline]."""
        lim = self.limits
        self._spreads = (self._spreads + [spread])[-lim.adaptive_window:]
        self.deadline = min(self.cfg.deadline, max(lim.adaptive_floor, lim.adaptive_factor * max(self._spreads)))

    # -- asking owners, verifiers and peers ------------------------------------------------------------------------
    def result_limit(self, plan: RoundPlan) -> int:
        """The largest shard result a round of this plan can give: a relay result holds every member's payload."""
        return (len(plan.members) + 2) * (self.max_payload + 2048) + (1 << 20)

    def owner_timeout(self) -> float:
        """The most any wait on one peer may take (it is cut shorter once other peers answered: see patience)."""
        return 2 * self.cfg.deadline + self.limits.owner_slack

    def evidence_limit(self) -> int:
        """The largest Evidence a peer may send: two claims and every member's payload."""
        return (len(self.members.get(self.round, ())) + 4) * (self.max_payload + 2048) + (1 << 20) + \
            4 * (self.layout.num_params // 8)

    def open_result(self, r: int, owner: bytes, data: bytes, plan: RoundPlan) -> Received | None:
        got, ahead = open_result(data, r, owner, plan, self.counters)
        if ahead:
            self._out_of_step.setdefault(r, {})[owner] = ahead
        return got

    def _verify_part(self, r: int, plan: RoundPlan, owner: bytes, payloads: dict[bytes, spb.Signed],
                     verdict_streams: dict[bytes, asyncio.Future]) -> tuple[spb.Verify, asyncio.Future] | None:
        """What the request to ``owner`` carries for the shard ``owner`` verifies, and the future that gets the
        stream its verdict will come back on (None when ``owner`` verifies nothing, or is this node)."""
        checked = [o for o in plan.verified_by(owner) if o in verdict_streams]
        if owner == self.me or not checked:
            return None
        verify = spb.Verify(round=r, owner=checked[0], payload=None if self._audited else payloads.get(checked[0]))
        return verify, verdict_streams[checked[0]]

    async def _ask_owner(self, r: int, plan: RoundPlan, owner: bytes, statement: spb.Signed,
                         payload: spb.Signed | None, own_slice: Contribution | None,
                         verify: tuple[spb.Verify, asyncio.Future] | None, patience: Patience) -> Received | None:
        key = (r, owner)
        fut = self.pending[key]
        got = None
        stream = None
        try:
            shares = plan.shares(self.me)
            if owner == self.me:
                own = self.owner_rounds[r]
                own.arrive(self.me, self._joining, statement if owner in shares else None, payload, own_slice)
                data = await own.result_for(self.me)
            else:
                request = spb.Contribute(round=r, payload=payload)
                if owner in shares:
                    request.statement.CopyFrom(statement)
                else:
                    request.plan, request.joining = (plan.fingerprint if self.member else b""), self._joining
                if verify is not None:
                    request.verify.CopyFrom(verify[0])
                try:
                    stream = await patience.within(
                        self.transport.send_request(owner, "contribute", request.SerializeToString(),
                                                    self.owner_timeout(), reuse=True), self.owner_timeout())
                except Exception:
                    self._unreachable(r, owner)
                    raise
                try:
                    data = await patience.within(stream.recv(self.result_limit(plan)), self.owner_timeout())
                except asyncio.TimeoutError:
                    raise
                except Exception:
                    self._unreachable(r, owner)  # the stream died under it (the peer or its daemon went down)
                    raise
            got = self.open_result(r, owner, data, plan)
            if got is not None and plan.mode == "relay":
                # keep a complete copy to serve to peers that ask for this result (this node's own slot was left
                # empty by the owner: it has the payload), and take it only if it carries what its body names
                got.relayed = [payload if sender == self.me and not s.body and payload is not None else s
                               for sender, s in zip(got.senders, got.relayed)]
                if len(got.relayed) != len(got.senders) or inputs_hash(got.relayed) != got.body.inputs_hash:
                    log.warning("round %d: owner %s relayed payloads its result does not name", r, owner.hex()[-12:])
                    self.counters.refused("coverage")
                    got = None
            if got is not None:
                patience.answer()
                self.received[key] = spb.ShardResult(status=spb.ShardResult.HAVE, body=got.signed,
                                                     relayed=got.relayed)
        except Exception as exc:  # timeouts, resets, and the daemon's own errors for unreachable peers
            log.warning("round %d: no result from owner %s (%r)", r, owner.hex()[-12:], exc)
            got = None
        finally:
            fut.set_result(got is not None)
            if verify is not None:
                # the verdict comes next on this stream: whoever waits for it reads it and closes the stream
                verify[1].set_result(stream if got is not None else None)
            if stream is not None and got is not None and verify is None:
                await self.transport.release(stream)  # every answer read: the next round's request goes on it
            elif stream is not None and (verify is None or got is None):
                await stream.close()
        return got

    def _unreachable(self, r: int, peer: bytes) -> None:
        """This node could not even open a stream to ``peer`` this round: its own shard stops waiting for it (a
        dead peer in a two-node swarm would hold every round to the deadline otherwise)."""
        own = self.owner_rounds.get(r)
        if own is not None:
            own.passed(peer)

    async def _settle(self, r: int, plan: RoundPlan, owner: bytes,
                      asking: asyncio.Future) -> tuple[Received | None, str]:
        """The owner's result, from the owner or, if it cannot be had there, from the peers; and where it came from."""
        got = await asyncio.shield(asking)
        if got is not None:
            return got, "owner"
        got = await fetch_result(self, r, owner, plan)
        return got, ("peer" if got is not None else "none")

    async def _judge(self, r: int, owner: bytes, settled: asyncio.Future) -> None:
        """As the verifier of ``owner``'s shard: judge its result as soon as this node has it (or gave up on it)."""
        got, _ = await asyncio.shield(settled)
        await self.verifier_rounds[(r, owner)].judge(got.signed if got else None, got.body if got else None,
                                                     lambda peer, senders: inputs_from(self, r, peer, owner, senders),
                                                     relayed=got.relayed if got else None)

    async def _ask_verifier(self, r: int, plan: RoundPlan, owner: bytes, payload: spb.Signed | None,
                            own_slice: Contribution | None, stream_future: asyncio.Future | None,
                            patience: Patience) -> Verdict | None:
        """The verdict on ``owner``'s shard: this node's own, or what its verifier sends after its own shard's result
        on the stream this node opened to it (``stream_future``)."""
        verifier = plan.verifiers[owner]
        stream = None
        try:
            if verifier == self.me:
                vr = self.verifier_rounds[(r, owner)]
                if payload is not None:
                    vr.arrive(self.me, payload, own_slice)
                signed = await vr.verdict_for(self.owner_timeout() + self.limits.fetch_timeout)
                patience.answer()
                if signed is None:
                    return None if vr.audited else NOT_AUDITED
            else:
                assert stream_future is not None
                stream = await stream_future
                if stream is None:
                    return None
                data = await patience.within(stream.recv(self.limits.small_message + (self.max_payload // 4)),
                                             self.owner_timeout() + self.limits.fetch_timeout)
                patience.answer()
                reply = spb.VerdictReply.FromString(data)
                await self.transport.release(stream)  # the verdict was the exchange's last answer
                stream = None
                if reply.not_audited:
                    return NOT_AUDITED
                if reply.status != spb.ShardResult.HAVE:
                    return None
                signed = reply.verdict
            return Verdict(signed, open_verdict(signed, verifier, owner, r))
        except Exception as exc:
            log.info("round %d: no verdict on %s from %s (%r)", r, owner.hex()[-12:], verifier.hex()[-12:], exc)
            return None
        finally:
            if stream is not None:
                await stream.close()

    # -- bookkeeping -----------------------------------------------------------------------------------------------
    async def owner_round(self, r: int) -> OwnerRound | None:
        """This node's owner round ``r``, waiting for it to open if the requester is a round ahead."""
        await self.wait_open(r)
        return self.owner_rounds.get(r)

    async def wait_open(self, r: int) -> None:
        if r > self.round and r not in self.round_open:
            # the requester finished the previous round before this node did: wait for it to open here
            event = self.round_open.setdefault(r, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=self.owner_timeout())
            except asyncio.TimeoutError:
                pass
        elif r in self.round_open:
            try:
                await asyncio.wait_for(self.round_open[r].wait(), timeout=self.owner_timeout())
            except asyncio.TimeoutError:
                pass

    def in_window(self, r: int) -> bool:
        return self.retention.in_window(self.round, r)

    def moved_on(self, peer: bytes, r: int) -> None:
        """``peer`` (authenticated by its stream) asked to contribute to round ``r``: it will not come to the
        rounds before it, so this node's owner rounds before it stop waiting for it. A peer that says so falsely
        only leaves itself out."""
        self.peer_rounds[peer] = r
        for own in self.owner_rounds.values():
            if own.round < r:
                own.passed(peer)

    def _evict(self, r: int) -> None:
        old = self.retention.oldest_kept(r, len(self.members.get(r, ())))
        for d in (self.owner_rounds, self.plans, self.members, self.round_open, self.statements, self.standing_at):
            for k in [k for k in d if k < old]:
                del d[k]
        for k in [k for k in self.kept_for_audit if k[0] <= r - self.limits.audit_rounds_kept]:
            del self.kept_for_audit[k]
        for d in (self.verifier_rounds, self.received, self.pending, self.verdicts_got, self.settling):
            for k in [k for k in d if k[0] < old]:
                del d[k]
        members = {m.peer for m in self.members.get(r + 1, ())}
        for p in [p for p in self.peer_rounds if p not in members]:
            del self.peer_rounds[p]
