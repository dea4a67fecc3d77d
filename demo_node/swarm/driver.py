"""The round loop on the network thread: open a round, take this node's contribution if it is ready in time
(:mod:`demo_node.swarm.handoff`), sign its statement, exchange with the round's owners and verifiers
(:mod:`demo_node.swarm.exchange`), check every shard's result (:mod:`demo_node.swarm.checking`), learn what the
round teaches (:mod:`demo_node.swarm.lessons`: who is in the next round, who may own), and hand the round's outcome
to the training side.

What the loop keeps of its rounds is in :class:`RoundBooks`, shared with the handlers that answer other nodes
(:mod:`demo_node.swarm.handlers`) through a :class:`RoundContext`; nothing a peer sends ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.net.transport import Transport
from demo_node.swarm.books import RoundBooks
from demo_node.swarm.checking import Checker
from demo_node.swarm.config import SPARSE, RoundConfig
from demo_node.swarm.context import RoundContext, RunSettings
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.evidence import Echo
from demo_node.swarm.exchange import RoundExchange
from demo_node.swarm.handlers import Handlers
from demo_node.swarm.handoff import ContributionSlot, Handoff
from demo_node.swarm.lessons import learn
from demo_node.limits import LIMITS, WITHDRAW_WAIT, Limits
from demo_node.swarm.membership import collect
from demo_node.swarm.outcome import RoundOutcome, ShardOutcome, restrict
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.plan import Member, RoundPlan, make_plan
from demo_node.swarm.shard_update import Update, compute
from demo_node.swarm.signing import MAX_ACCUSED, sign
from demo_node.swarm.standing import Standing
from demo_node.swarm.verifier import VerifierRound
from demo_node.wire.codec import encode, encoded_size
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs

log = logging.getLogger(__name__)
__all__ = ["Handoff", "RoundDriver", "RunSettings"]


class RoundDriver:
    def __init__(self, transport: Transport, layout: Layout, me: bytes, run: RunSettings, rounds: RoundConfig,
                 counters: SwarmCounters, limits: Limits = LIMITS):
        self.transport, self.layout, self.me = transport, layout, me
        self.identity = transport.host.identity
        self.run, self.cfg, self.counters, self.limits = run, rounds, counters, limits
        self.payload_bytes = encoded_size(layout, run.values, run_id=run.run_id)
        self.books = RoundBooks(limits, layout.num_params, self.payload_bytes)
        self.ctx = RoundContext(transport, layout, me, run, rounds, counters, limits, self.books)
        self.signs = self.ctx.signs
        self.checker = self.ctx.checker = Checker(self.ctx)
        self.echo = Echo(self.ctx)
        self.handlers = Handlers(self.ctx)
        self.outcomes: "queue.Queue[RoundOutcome]" = queue.Queue()
        self.member = True
        self.listening = False
        """Following the rounds without asking to join: the node's parameters are still downloading (it applies
        these rounds' outcomes once they are in), so it is not counted yet."""
        self._digest: tuple[int, bytes] = (0, b"")
        self._slot: ContributionSlot | None = None
        self._leave = False
        self._jump: tuple[int, list[Member], Standing, int] | None = None
        self.epoch = 0
        self._epochs = 0
        self._stopped = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.deadline = rounds.deadline
        self._spreads: list[float] = []
        self.finished = threading.Event()
        """Set when the loop has ended (after leaving, or stopped)."""

    @property
    def round(self) -> int:
        """The round the loop has open (or opens next)."""
        return self.books.round

    # -- lifecycle (network thread) ----------------------------------------------------------------------------
    async def start(self, round: int, members: list[Member], member: bool, standing: Standing | None = None,
                    listening: bool = False) -> None:
        self.books.round, self.member, self.listening = round, member and not listening, listening
        self.books.standing = standing.copy() if standing is not None else Standing()
        self.books.members[round] = sorted(set(members))
        self._slot = ContributionSlot(asyncio.get_running_loop(), self.limits)
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
        self.ctx.close()

    # -- calls from the training side (any thread) -------------------------------------------------------------
    def hand_over(self, contribution: Contribution) -> Handoff:
        """Queue this node's next contribution; it goes into the next round this node opens as a member."""
        assert self._slot is not None
        return self._slot.hand_over(contribution)

    def withdraw(self, handoff: Handoff, timeout: float = WITHDRAW_WAIT) -> bool:
        """Take back a handed-over contribution that no round has taken yet; False if a round took it."""
        if handoff.taken.is_set() or self._slot is None:
            return False
        return self.transport.host.call(self._slot.take_back(handoff), timeout)

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
            if self._slot is not None:
                self._slot.event.set()

        self.transport.host.loop.call_soon_threadsafe(jump)
        return epoch

    def stop_listening(self) -> None:
        """The node applies rounds on the swarm's parameters: from the next round on it asks to join (or, still a
        member in the swarm's books, acts as one)."""
        self.transport.host.loop.call_soon_threadsafe(setattr, self, "listening", False)

    def downloading(self, busy: bool) -> None:
        """The training side is (or is no longer) downloading the swarm's state: while it is, no contribution will
        come, and the rounds go on without waiting for one (the owners would wait for this node otherwise)."""
        if self._slot is not None:
            self._slot.set_threadsafe(downloading=busy)

    def idle(self, waiting: bool) -> None:
        """The training side waits for rounds without stepping (a founder waiting for peers): rounds wait for its
        gradient only ``idle_round`` seconds, not half a deadline, so they stay short and paced."""
        if self._slot is not None:
            self._slot.set_threadsafe(idle=waiting)

    def request_leave(self) -> None:
        self.transport.host.loop.call_soon_threadsafe(self._request_leave)

    def _request_leave(self) -> None:
        self._leave = True
        if self._slot is not None:
            self._slot.event.set()

    # -- the round loop ----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        books = self.books
        try:
            while not self._stopped.is_set():
                try:
                    outcome = await self._one_round(books.round)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # nothing a peer sends may end the loop: this round is skipped here (the digest vote repairs it)
                    log.exception("round %d failed on this node; it is skipped here", books.round)
                    outcome = self._empty_outcome(books.round)
                self.outcomes.put(outcome)
                books.evict(books.round)
                if outcome.leaving or (self._leave and not self.member):
                    break  # a member leaves after its leaving round; a node that is no member simply stops
                if self._jump is not None:
                    books.round, members, books.standing, self.epoch = self._jump
                    books.members[books.round] = members
                    self._jump = None
                else:
                    books.round += 1
                self.member = not self.listening and any(m.peer == self.me for m in books.members[books.round])
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("round loop failed")
        finally:
            self.finished.set()

    def _empty_outcome(self, r: int) -> RoundOutcome:
        books = self.books
        plan = books.plans.get(r) or self.plan_of(r)
        books.members[r + 1] = list(books.members[r])
        return RoundOutcome(round=r, plan=plan, shards=[ShardOutcome(o, plan.ranges[o], None) for o in plan.owners],
                            contribution=None, next_members=list(books.members[r]),
                            statements=collect(plan, "", {})[0],
                            seconds=0.0, leaving=self._leave and self.member, member=self.member,
                            demoted=set(books.standing.demoted), benched=dict(books.standing.benched),
                            epoch=self.epoch)

    def plan_of(self, r: int) -> RoundPlan:
        self.books.standing_at[r] = self.books.standing.copy()
        members = self.books.standing.roles(self.books.members[r], r)
        return make_plan(r, members, self.layout, self.payload_bytes, self.cfg.exchange, self.run.defense.verify_shards)

    def _take_roles(self, plan: RoundPlan) -> None:
        """This node's owner round and verifier rounds of ``plan``'s round. A node that jumped back to a downloaded
        state may have served this round before the jump, under the same plan: what it served stands (the others
        applied it), so it is kept rather than made again."""
        books, r = self.books, plan.round
        served = books.owner_rounds.get(r)
        if self.me in plan.owners and (served is None or served.plan.fingerprint != plan.fingerprint):
            own = books.owner_rounds[r] = OwnerRound(plan, self.me, self.identity, self.layout, self.run.run_id,
                                                     self.deadline, self.signs, self._shard_update, self.counters)
            for peer in [p for p, at in books.peer_rounds.items() if at > r]:
                own.passed(peer)
        for owner in plan.verified_by(self.me):
            judged = books.verifier_rounds.get((r, owner))
            if judged is None or judged.plan.fingerprint != plan.fingerprint:
                books.verifier_rounds[(r, owner)] = VerifierRound(plan, owner, self.me, self.identity, self.layout,
                                                                  self.run.run_id, self.signs, self.ctx.compute,
                                                                  self.run.defense.audit_fraction,
                                                                  self.limits.audit_wait)

    async def _one_round(self, r: int) -> RoundOutcome:
        books = self.books
        opened = books.retention.opened(r)
        plan = books.plans[r] = self.plan_of(r)
        self._take_roles(plan)
        books.round_open.setdefault(r, asyncio.Event()).set()
        assert self._slot is not None
        handoff = await self._slot.wait(opened, books.owner_rounds.get(r), self.deadline,
                                        lambda: self._leave or not self.member or self._stopped.is_set())
        contribution = handoff.contribution if handoff is not None else None
        if handoff is not None:
            handoff.taken.set()
        leaving = self._leave and self.member
        audited = self.run.defense.audit_fraction < 1.0
        slices, payloads = {}, {}
        if contribution is not None:
            for owner in plan.owners:
                slices[owner] = restrict(contribution, plan.ranges[owner])
                data = encode(slices[owner], self.layout, run_id=self.run.run_id, round=r, sender=self.me)
                payloads[owner] = sign(self.identity, data)
                if audited and plan.verifiers.get(owner, self.me) != self.me:
                    books.kept_for_audit[(r, owner)] = payloads[owner]
        joining = not self.member and not self.listening
        ex = RoundExchange(self.ctx, plan, self._statement(r, plan, leaving, joining), slices, payloads, self.member,
                           joining, audited)
        shards, refusals = [], {}
        for owner in plan.owners:
            got, source = await ex.settled[owner]
            own = ex.asking[owner].result()
            if own is not None and own.refusal:
                refusals[owner] = own.refusal
            verdict = await ex.verdicts[owner] if owner in ex.verdicts else None
            shards.append(await self.checker.shard(r, plan, owner, got, verdict, source))
        await asyncio.gather(*ex.judging)
        lessons = learn(plan, books.members[r], shards, self.run.run_id, books.standing)
        for _ in range(lessons.statements.rejected):
            self.counters.refused("statement")
        books.statements[r] = lessons.statements
        books.members[r + 1] = lessons.next_members
        self.echo.heard(r, lessons.accusers)
        if self.cfg.adaptive_deadline and r in books.owner_rounds and books.owner_rounds[r].spread is not None:
            self._adapt(books.owner_rounds[r].spread)
        return RoundOutcome(
            round=r, plan=plan, shards=shards, contribution=contribution, next_members=lessons.next_members,
            statements=lessons.statements, seconds=time.monotonic() - opened, leaving=leaving, member=self.member,
            refusals=refusals, demoted=set(books.standing.demoted), benched=dict(books.standing.benched),
            out_of_step=self._step_of(r, plan), epoch=self.epoch, standing_changes=lessons.changed,
        )

    def _step_of(self, r: int, plan: RoundPlan) -> int:
        """The swarm's round, when most other owners refused round ``r`` as not theirs (else 0)."""
        said = self.books.out_of_step.pop(r, {})
        others = [o for o in plan.owners if o != self.me]
        if not others or 2 * len(said) <= len(others):
            return 0
        return max(said.values())

    def _statement(self, r: int, plan: RoundPlan, leaving: bool, joining: bool) -> spb.Signed:
        digest_round, digest = self._digest
        st = spb.Statement(peer=self.me, run_id=self.run.run_id, round=r, digest_round=digest_round, digest=digest,
                           client=self.run.client, joining=joining, leaving=leaving,
                           plan=plan.fingerprint if self.member else b"",
                           accused=sorted(self.checker.accused)[:MAX_ACCUSED])
        return sign(self.identity, st.SerializeToString())

    async def _shard_update(self, plan: RoundPlan, contributions: list[Contribution],
                            ranges: dict[int, tuple[int, int]]) -> Update:
        """An owner's shard update in the plan's exchange mode, computed off the network thread."""
        if plan.mode == SPARSE:
            return await self.ctx.compute(lambda: compute(SPARSE, self.signs, contributions, self.layout, ranges,
                                                          run_id=self.run.run_id, round=plan.round, owner=self.me))
        return Update(*await self._packed_signs(contributions, ranges))

    async def _packed_signs(self, contributions: list[Contribution], ranges: dict[int, tuple[int, int]]):
        """An owner's shard update in sign exchange, computed off the network thread."""
        return await self.ctx.compute(lambda: pack_signs(self.signs.signs(contributions), ranges))

    def _adapt(self, spread: float) -> None:
        """Adaptive deadline: a multiple of the recent arrival spread, within [a floor, the configured deadline]."""
        lim = self.limits
        self._spreads = (self._spreads + [spread])[-lim.adaptive_window:]
        self.deadline = min(self.cfg.deadline, max(lim.adaptive_floor, lim.adaptive_factor * max(self._spreads)))
