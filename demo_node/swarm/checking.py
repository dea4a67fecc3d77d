"""Whether a shard's result may be applied, and which update: the owner's, or the one its signed inputs give.

With three members or more every shard has a verifier that signs one verdict on the body it judged (see
:mod:`demo_node.swarm.verifier`). A node applies the owner's update when the verdict says CORRECT about the very body
the node got. When the verdict judged another body than the one this node got, the owner signed two results for one
shard: this node takes the judged one (so every node applies the same) and holds the two as evidence. When a sign
or sparse exchange verdict says WRONG, the node fetches the signed inputs, recomputes, and believes whichever of the
two the inputs back: the other one signed a claim that contradicts signed inputs, and is accused, with those messages
as the evidence (served to anyone who asks, and checked by them before they accuse too:
:mod:`demo_node.swarm.evidence`).

A verifier reaches every node on a stream of its own, so it could tell nodes different things. A node whose verdict
says WITHHELD, or that got none, therefore asks the round's other members what they got before it decides, and takes
the strongest verdict it hears: WRONG (which the inputs then settle), CORRECT, "not audited" (a run that audits a
fraction of rounds), WITHHELD; two different verdicts the verifier signed for one shard are evidence against it. So a
verifier cannot split nodes by lying about withholding: a node applies nothing on WITHHELD only if no member heard
better. A WITHHELD that stands means the owner would not serve an input its result names: nobody applies that
update (a lie hidden so is never applied) and the owner has a fault (see :mod:`demo_node.swarm.standing`). A node
that hears no verdict at all applies the update as unverified (every node does the same), and so does one whose
verifier drew the round out of its audits (``unaudited``); an owner this node has already caught is never applied
unverified in sign or sparse exchange.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from demo_node.swarm.asking import fetch_result, inputs_from, reached_others, verdicts_from_peers
from demo_node.swarm.included import inputs_hash, senders_of
from demo_node.swarm.outcome import ShardOutcome
from demo_node.swarm.owner import read_payload
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.results import Received, Verdict
from demo_node.swarm.shard_update import RECOMPUTED, Update, judge, mode_code, update_of
from demo_node.swarm.signing import BadSigned, body_hash, open_body
from demo_node.swarm.standing import SILENT
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

if TYPE_CHECKING:
    from demo_node.swarm.context import RoundContext

log = logging.getLogger(__name__)


_RANK = {spb.VerdictBody.WRONG: 5, spb.VerdictBody.CORRECT: 4, spb.VerdictBody.WITHHELD: 2,
         spb.VerdictBody.MISSING: 1}
_SETTLE = (spb.VerdictBody.WITHHELD, spb.VerdictBody.MISSING, spb.VerdictBody.UNVERIFIED)
"""Verdicts after which a node asks the other members what they heard before it decides."""


def _strength(v: Verdict) -> int:
    """Which verdict a node takes when it heard several (see the module docstring)."""
    return 3 if not v.audited else _RANK.get(v.body.finding, 0)


class Checker:
    def __init__(self, ctx: "RoundContext"):
        self.ctx = ctx
        self.accused: dict[bytes, spb.Evidence] = {}
        """Peers this node caught, with the evidence (what its statements accuse, what it serves on request)."""

    def accuse(self, evidence: spb.Evidence, checked_from: bytes | None = None) -> None:
        """Accuse ``evidence.accused`` from now on (caught here, or ``checked_from`` that accuser's evidence)."""
        if evidence.accused not in self.accused:
            self.accused[evidence.accused] = evidence
            self.ctx.counters.refused("signature")
            kind = spb.Evidence.Kind.Name(evidence.kind).lower()
            how = f"checked the evidence of {checked_from.hex()[-12:]}" if checked_from else "caught it"
            log.warning("round %d: %s is accused (%s; this node %s)", evidence.round, evidence.accused.hex()[-12:],
                        kind, how)

    async def shard(self, r: int, plan: RoundPlan, owner: bytes, got: Received | None, verdict: Verdict | None,
                    source: str) -> ShardOutcome:
        ranges = plan.ranges[owner]
        if got is None:
            missing = verdict is not None and verdict.audited and verdict.body.finding == spb.VerdictBody.MISSING
            # a verifier that says nobody had it tells a joiner that the members skip it too
            return ShardOutcome(owner, ranges, None, source="none", check="missing" if missing else "")
        verifier = plan.verifiers.get(owner)
        if verifier is None:
            if owner == self.ctx.me and not await reached_others(self.ctx, r, plan):
                return self._unreached(owner, ranges, got, source)
            return self._outcome(owner, ranges, got, source)
        recomputed = plan.mode in RECOMPUTED
        if verdict is None or (verdict.audited and verdict.body.finding in _SETTLE):
            verdict = await self._settle_verdict(r, plan, owner, verifier, verdict)
        heard_none = verdict is None
        if verdict is not None and verdict.audited and verdict.body.finding == spb.VerdictBody.MISSING:
            # its result reached nobody but this node (the owner itself, or a node it answered too late): skipped
            # here as everywhere
            return self._outcome(owner, ranges, got, source, check="missing", skip=SILENT)
        if owner == self.ctx.me and (verdict is None or verdict.body.finding == spb.VerdictBody.UNVERIFIED) \
                and not await reached_others(self.ctx, r, plan):
            return self._unreached(owner, ranges, got, source)
        unchecked = "unverified"
        if verdict is not None and not verdict.audited:
            verdict, unchecked = None, "unaudited"  # weighs what a silent verifier does
        if verdict is not None and not recomputed and verdict.body.finding != spb.VerdictBody.CORRECT:
            verdict = None  # in relay exchange a verifier vouches for a body or says nothing that counts
        if verdict is not None and verdict.body.body_hash != body_hash(got.signed):
            copy = await self._judged_copy(r, plan, owner, verifier, verdict)
            if copy is None:
                verdict = None  # the verifier cannot show what it judged: its verdict counts for nothing
            else:
                self.accuse(spb.Evidence(accused=owner, round=r, claim=got.signed, judged=copy.signed,
                                         kind=spb.Evidence.BODY_EQUIVOCATION))
                got = copy
        if verdict is not None and verdict.body.finding == spb.VerdictBody.WITHHELD:
            log.warning("round %d: the owner %s withheld inputs its result names: its update is not applied", r,
                        owner.hex()[-12:])
            return self._outcome(owner, ranges, got, source, check="withheld", skip="withheld")
        if verdict is None or verdict.body.finding == spb.VerdictBody.UNVERIFIED:
            if recomputed and owner in self.accused:
                return await self._recompute(r, plan, owner, None, got, None, source)
            shard = self._outcome(owner, ranges, got, source, check=unchecked)
            shard.unheard = heard_none
            return shard
        if verdict.body.finding == spb.VerdictBody.CORRECT:
            return self._outcome(owner, ranges, got, source, check="verified")
        return await self._recompute(r, plan, owner, verifier, got, verdict, source)

    def _unreached(self, owner: bytes, ranges, got: Received, source: str) -> ShardOutcome:
        """This node's own result, which no other member holds: skipped here as they skip it (they lost it)."""
        log.warning("round %d: this node's own shard reached no other member: skipped here as everywhere",
                    got.body.round)
        return self._outcome(owner, ranges, got, source, check="missing", skip=SILENT)

    async def _settle_verdict(self, r: int, plan: RoundPlan, owner: bytes, verifier: bytes,
                              mine: Verdict | None) -> Verdict | None:
        """The strongest verdict on ``owner``'s shard among this node's and the other members' (see the module
        docstring); two different ones signed by the verifier are evidence against it."""
        heard = await verdicts_from_peers(self.ctx, r, owner, plan)
        candidates = ([mine] if mine is not None else []) + heard
        signed = {}
        for v in candidates:
            if v.audited and v.signed.body and v.body.plan == plan.fingerprint:
                signed.setdefault(v.signed.body, v)
        if len(signed) > 1 and verifier not in self.accused:
            one, two = list(signed.values())[:2]
            self.accuse(spb.Evidence(accused=verifier, round=r, claim=one.signed, judged=two.signed,
                                     kind=spb.Evidence.VERDICT_EQUIVOCATION))
        return max(candidates, key=_strength, default=None)

    def _outcome(self, owner: bytes, ranges, got: Received, source: str, check: str = "",
                 update: Update | None = None, skip: str = "") -> ShardOutcome:
        update = update if update is not None else update_of(got.body)
        return ShardOutcome(owner, ranges, got.body, list(got.relayed), update.sign_bits, update.nonzero_blocks,
                            source, check, list(got.senders), skip=skip, cut=update.cut)

    async def _judged_copy(self, r: int, plan: RoundPlan, owner: bytes, verifier: bytes,
                           verdict: Verdict) -> Received | None:
        """The owner's signed body the verifier judged, if it can show one with the hash its verdict names (in relay
        exchange with the payloads it relays: the verifier's copy of the result)."""
        if plan.mode not in RECOMPUTED:
            copy = await fetch_result(self.ctx, r, owner, plan, peers=[verifier])
            if copy is None or body_hash(copy.signed) != verdict.body.body_hash:
                return None
            return copy
        copy = (await inputs_from(self.ctx, r, verifier, owner, []))[0]
        try:
            body = open_body(copy, owner, r)
        except BadSigned:
            return None
        if body_hash(copy) != verdict.body.body_hash or body.mode != mode_code(plan.mode):
            return None
        try:
            return Received(copy, body, senders_of(plan.order, body.included))
        except PayloadError:
            return None

    async def _recompute(self, r: int, plan: RoundPlan, owner: bytes, verifier: bytes | None, got: Received,
                         verdict: Verdict | None, source: str) -> ShardOutcome:
        """Fetch the signed inputs, recompute, and apply what they back (see the module docstring)."""
        ctx = self.ctx
        ranges = plan.ranges[owner]
        body = got.body
        senders = got.senders
        inputs = await inputs_from(ctx, r, verifier, owner, senders) if verifier else [spb.Signed()] * len(senders)
        lacking = [s for s, signed in zip(senders, inputs) if not signed.body]
        if lacking:
            from_owner = dict(zip(lacking, await inputs_from(ctx, r, owner, owner, lacking)))
            inputs = [signed if signed.body else from_owner.get(s, spb.Signed()) for s, signed in zip(senders, inputs)]
        if verifier and inputs_hash(inputs) != body.inputs_hash:
            # a contributor may have sent the owner and the verifier different payloads: the owner's are the ones
            # its result must agree with
            inputs = await inputs_from(ctx, r, owner, owner, senders)
        contributions = []
        try:
            if len(inputs) != len(senders):
                raise PayloadError("coverage", "not every input could be had")
            if inputs_hash(inputs) != body.inputs_hash:
                raise PayloadError("signature", "inputs that are not the ones the owner named")
            for sender, signed in zip(senders, inputs):
                contributions.append(read_payload(signed, sender, ctx.layout, ctx.run.run_id, r, ranges))
        except (PayloadError, BadSigned) as exc:
            log.warning("round %d: cannot check the shard of %s (%s): its blocks are skipped here", r,
                        owner.hex()[-12:], exc)
            return ShardOutcome(owner, ranges, None, source=source, check="unverifiable")

        def judged(claimed: Update) -> tuple[bool, Update]:
            return judge(plan.mode, ctx.signs, contributions, ctx.layout, ranges, claimed, run_id=ctx.run.run_id,
                         round=r, owner=owner)

        owner_ok, truth = await ctx.compute(lambda: judged(update_of(body)))
        if owner_ok:
            if verdict is not None:
                self.accuse(spb.Evidence(accused=verifier, round=r, claim=verdict.signed, judged=got.signed,
                                         inputs=inputs, kind=spb.Evidence.FALSE_VERDICT))
            return self._outcome(owner, ranges, got, source, check="verified")
        self.accuse(spb.Evidence(accused=owner, round=r, claim=got.signed, inputs=inputs, kind=spb.Evidence.LIE))
        if verdict is not None:
            claimed = update_of(verdict.body)
            verifier_ok, _ = await ctx.compute(lambda: judged(claimed))
            if verifier_ok:
                # every honest node that checks applies the verifier's signed update: the same one everywhere
                return self._outcome(owner, ranges, got, source, check="corrected", update=claimed)
        return self._outcome(owner, ranges, got, source, check="recomputed", update=truth)
