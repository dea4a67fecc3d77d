"""Accusations that are evidence: what a node checks before it accuses anyone, and how it takes up others'.

A node accuses a peer in its statements only while it holds evidence it checked itself: messages the peer signed
that prove a lie, on their own or with signed inputs (see ``Evidence.Kind`` in ``proto/demo_node_swarm.proto``).
When another member's statement accuses a peer, this node asks that member for its evidence, checks it, and only if
it holds accuses the peer too. A peer is demoted once more than half of the round's other members accuse it
(:meth:`demo_node.swarm.standing.Standing.demote_accused`): honest members accuse only with checked evidence, so
colluders that are not most of the swarm cannot demote an honest peer, however many accusations they sign, and a
real liar is accused by every honest member that could fetch the evidence.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from demo_node.core.layout import Layout
from demo_node.swarm.included import inputs_hash, senders_of
from demo_node.swarm.owner import read_payload
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.signing import BadSigned, body_hash, open_body, open_verdict
from demo_node.swarm.shard_update import RECOMPUTED, Update, judge, mode_code, update_of
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

if TYPE_CHECKING:
    from demo_node.swarm.context import RoundContext

log = logging.getLogger(__name__)
Kind = spb.Evidence.Kind
RETRY_ROUNDS = 4
"""Rounds before this node asks again for the evidence behind an accusation it could not confirm."""


def _recomputed(signs: ShardSigns, layout: Layout, run_id: str, plan: RoundPlan, owner: bytes, body: spb.ShardBody,
                inputs: list[spb.Signed]) -> tuple[bool, Update] | None:
    """Whether ``body``'s update is what its named inputs give (None when the inputs are not the ones it names)."""
    if owner not in plan.owners or plan.mode not in RECOMPUTED or body.mode != mode_code(plan.mode) \
            or body.plan != plan.fingerprint:
        return None
    senders = senders_of(plan.order, body.included)
    if len(inputs) != len(senders) or inputs_hash(inputs) != body.inputs_hash:
        return None
    ranges = plan.ranges[owner]
    contributions = [read_payload(s, p, layout, run_id, plan.round, ranges) for p, s in zip(senders, inputs)]
    return judge(plan.mode, signs, contributions, layout, ranges, update_of(body), run_id=run_id, round=plan.round,
                 owner=owner)


def holds(ev: spb.Evidence, plan: RoundPlan, layout: Layout, run_id: str, signs: ShardSigns) -> bool:
    """Whether ``ev`` proves a lie of ``ev.accused`` in round ``plan.round`` (``plan``: this node's plan of that
    round; evidence about another plan of it proves nothing here). May take a shard's recomputation: call it off
    the network thread."""
    accused, r = ev.accused, plan.round
    if ev.round != r or accused not in plan.peers:
        return False
    try:
        if ev.kind == Kind.LIE:
            body = open_body(ev.claim, accused, r)
            judged = _recomputed(signs, layout, run_id, plan, accused, body, list(ev.inputs))
            return judged is not None and not judged[0]
        if ev.kind == Kind.FALSE_VERDICT:
            verdict = open_verdict(ev.claim, accused, None, r)
            if verdict.finding != spb.VerdictBody.WRONG or plan.verifiers.get(verdict.owner) != accused:
                return False
            body = open_body(ev.judged, verdict.owner, r)
            if body_hash(ev.judged) != verdict.body_hash:
                return False
            judged = _recomputed(signs, layout, run_id, plan, verdict.owner, body, list(ev.inputs))
            return judged is not None and judged[0]
        if ev.kind == Kind.BODY_EQUIVOCATION:
            one, two = open_body(ev.claim, accused, r), open_body(ev.judged, accused, r)
            return one.plan == two.plan == plan.fingerprint and ev.claim.body != ev.judged.body
        if ev.kind == Kind.VERDICT_EQUIVOCATION:
            one, two = open_verdict(ev.claim, accused, None, r), open_verdict(ev.judged, accused, None, r)
            return (one.owner == two.owner and one.plan == two.plan == plan.fingerprint
                    and plan.verifiers.get(one.owner) == accused and ev.claim.body != ev.judged.body)
    except (BadSigned, PayloadError) as exc:
        log.info("round %d: evidence against %s does not hold (%s)", r, accused.hex()[-12:], exc)
    return False


class Echo:
    """Takes up the accusations of other members once their evidence checks out here (see the module docstring)."""

    def __init__(self, ctx: "RoundContext"):
        self.ctx = ctx
        self._asked: dict[bytes, int] = {}
        """Accused -> the round this node last asked for the evidence (it asks again RETRY_ROUNDS later)."""
        self._tasks: set[asyncio.Task] = set()

    def heard(self, r: int, accusers: dict[bytes, set[bytes]]) -> None:
        """The accusations in round ``r``'s statements: check the evidence of those this node does not make yet."""
        ctx = self.ctx
        for accused, who in accusers.items():
            if accused == ctx.me or accused in ctx.checker.accused or accused in ctx.books.standing.demoted:
                continue
            if r - self._asked.get(accused, -RETRY_ROUNDS) < RETRY_ROUNDS:
                continue
            self._asked[accused] = r
            task = asyncio.ensure_future(self._take_up(accused, sorted(who - {ctx.me})))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _take_up(self, accused: bytes, accusers: list[bytes]) -> None:
        ctx = self.ctx
        request = spb.EvidenceRequest(accused=accused).SerializeToString()
        for accuser in accusers:
            try:
                data = await ctx.transport.request(accuser, "evidence", request, ctx.limits.fetch_timeout + ctx.cfg.deadline,
                                                 limit=ctx.evidence_limit())
                ev = spb.Evidence.FromString(data)
            except Exception as exc:
                log.debug("no evidence against %s from %s (%r)", accused.hex()[-12:], accuser.hex()[-12:], exc)
                continue
            plan = ctx.books.plans.get(ev.round)
            if ev.accused != accused or plan is None:
                continue
            if await ctx.compute(lambda: holds(ev, plan, ctx.layout, ctx.run.run_id, ctx.signs)):
                ctx.checker.accuse(ev, checked_from=accuser)
                return
            log.warning("round %d: %s accuses %s with evidence that does not hold", ev.round, accuser.hex()[-12:],
                        accused.hex()[-12:])

    def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
