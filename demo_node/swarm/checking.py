"""Whether a shard's result may be applied, and which update: the owner's, or the one its signed inputs give.

In verified sign exchange every shard has a verifier that recomputes the owner's update and signs a verdict. A node
applies the owner's signed update when the verdict says CORRECT about the very body the node got. When the verdict
says WRONG, the node fetches the signed inputs, recomputes, and believes whichever of the two the inputs back: the
other one signed a claim that contradicts signed inputs, and is accused, with those messages as the evidence (served
to anyone who asks). When the verdict judged another body than the one this node got, the owner signed two results
for one shard: that is evidence too, and the verified one is applied. A silent verifier leaves the update
unverified (applied, and counted), and so does a verdict that the round was not audited (a run that audits a
fraction of rounds); an owner this node has already caught is never applied unverified. A verdict that the owner
withheld inputs its result names weighs what a silent verifier does too (applied, counted apart as ``withheld``):
a node must apply what a node that missed the verdict applies, or a verifier that told some nodes one thing and
others another would split their parameters; and it accuses nobody, as withholding is no proof (a failed link looks
the same) and nobody checks what an accusation rests on, so one lying member plus one failed link would demote an
honest owner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from demo_node.swarm.asking import inputs_from
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.included import inputs_hash, senders_of
from demo_node.swarm.outcome import ShardOutcome
from demo_node.swarm.owner import read_payload
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.signing import BadSigned, body_hash, open_body
from demo_node.swarm.verifier import judge_signs
from demo_node.wire.errors import PayloadError, refusal_name
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

if TYPE_CHECKING:
    from demo_node.swarm.driver import RoundDriver

log = logging.getLogger(__name__)


@dataclass
class Received:
    """A shard result as this node got it, its owner's signature checked."""

    signed: spb.Signed
    body: spb.ShardBody
    senders: list[bytes]
    """Whose contributions the body includes, in aggregation order (read from its inclusion bits)."""
    relayed: list[spb.Signed] = field(default_factory=list)
    refusal: str = ""


@dataclass
class Verdict:
    signed: spb.Signed
    body: spb.VerdictBody
    audited: bool = True
    """False: the verifier said it drew this round out of its audits (on its own stream; nothing is signed)."""


NOT_AUDITED = Verdict(spb.Signed(), spb.VerdictBody(), audited=False)


def open_result(data: bytes, r: int, owner: bytes, plan: RoundPlan,
                counters: SwarmCounters) -> tuple[Received | None, int]:
    """A shard result's bytes, checked: HAVE, signed by its owner, of this round and the plan's mode; and, when the
    owner refused the round as one it does not know while it is at this round or ahead, its round (else 0)."""
    try:
        res = spb.ShardResult.FromString(data)
    except Exception:
        counters.refused("malformed")
        return None, 0
    if res.status != spb.ShardResult.HAVE:
        reason = refusal_name(res.refusal)
        log.warning("round %d: owner %s answered %s (%s)", r, owner.hex()[-12:],
                    spb.ShardResult.Status.Name(res.status) if res.status in spb.ShardResult.Status.values()
                    else res.status, reason)
        # an owner at this round or ahead that does not know this node's round: this node is out of step (an owner
        # behind it is the one that must catch up)
        ahead = reason in ("plan_mismatch", "round_unknown") and res.current_round >= r
        return None, (max(1, int(res.current_round)) if ahead else 0)
    try:
        body = open_body(res.body, owner, r)
        if body.mode != (spb.EXCHANGE_RELAY if plan.mode == "relay" else spb.EXCHANGE_SIGN):
            log.warning("round %d: owner %s answered in another exchange mode", r, owner.hex()[-12:])
            return None, 0
        senders = senders_of(plan.order, body.included)
    except (BadSigned, PayloadError) as exc:
        log.warning("round %d: the result of %s does not check out (%s)", r, owner.hex()[-12:], exc)
        counters.refused(exc.reason)
        return None, 0
    return Received(res.body, body, senders, list(res.relayed), refusal_name(res.refusal)), 0


class Checker:
    def __init__(self, driver: "RoundDriver"):
        self.driver = driver
        self.accused: dict[bytes, spb.Evidence] = {}
        """Peers this node caught, with the evidence (what its statements accuse, what it serves on request)."""

    def accuse(self, evidence: spb.Evidence) -> None:
        if evidence.accused not in self.accused:
            self.accused[evidence.accused] = evidence
            self.driver.counters.refused("signature")
            log.warning("round %d: %s signed a claim its inputs contradict: accused", evidence.round,
                        evidence.accused.hex()[-12:])

    async def shard(self, r: int, plan: RoundPlan, owner: bytes, got: Received | None, verdict: Verdict | None,
                    source: str) -> ShardOutcome:
        ranges = plan.ranges[owner]
        if got is None:
            return ShardOutcome(owner, ranges, None, source="none")
        verifier = plan.verifiers.get(owner)
        if verifier is None or plan.mode != "sign":
            return self._outcome(owner, ranges, got, source)
        unchecked = "unverified"
        if verdict is not None and not verdict.audited:
            verdict, unchecked = None, "unaudited"  # weighs what a silent verifier does
        if verdict is not None and verdict.body.body_hash != body_hash(got.signed):
            copy = await self._judged_copy(r, plan, owner, verifier, verdict)
            if copy is None:
                verdict = None  # the verifier cannot show what it judged: its verdict counts for nothing
            else:
                self.accuse(spb.Evidence(accused=owner, round=r, claim=got.signed, judged=copy.signed))
                got = copy
        if verdict is not None and verdict.body.finding == spb.VerdictBody.WITHHELD:
            verdict, unchecked = None, "withheld"  # weighs what a silent verifier does (see the module docstring)
        if verdict is None or verdict.body.finding == spb.VerdictBody.UNVERIFIED:
            if owner in self.accused:
                return await self._recompute(r, plan, owner, None, got, None, source)
            return self._outcome(owner, ranges, got, source, check=unchecked)
        if verdict.body.finding == spb.VerdictBody.CORRECT:
            return self._outcome(owner, ranges, got, source, check="verified")
        return await self._recompute(r, plan, owner, verifier, got, verdict, source)

    def _outcome(self, owner: bytes, ranges, got: Received, source: str, check: str = "",
                 bits: tuple[bytes, bytes] | None = None) -> ShardOutcome:
        sign_bits, nonzero = bits if bits is not None else (got.body.sign_bits, got.body.nonzero_blocks)
        return ShardOutcome(owner, ranges, got.body, list(got.relayed), sign_bits, nonzero, source, check,
                            list(got.senders))

    async def _judged_copy(self, r: int, plan: RoundPlan, owner: bytes, verifier: bytes,
                           verdict: Verdict) -> Received | None:
        """The owner's signed body the verifier judged, if it can show one with the hash its verdict names."""
        copy = (await inputs_from(self.driver, r, verifier, owner, []))[0]
        try:
            body = open_body(copy, owner, r)
        except BadSigned:
            return None
        if body_hash(copy) != verdict.body.body_hash or body.mode != spb.EXCHANGE_SIGN:
            return None
        try:
            return Received(copy, body, senders_of(plan.order, body.included))
        except PayloadError:
            return None

    async def _recompute(self, r: int, plan: RoundPlan, owner: bytes, verifier: bytes | None, got: Received,
                         verdict: Verdict | None, source: str) -> ShardOutcome:
        """Fetch the signed inputs, recompute, and apply what they back (see the module docstring)."""
        d = self.driver
        ranges = plan.ranges[owner]
        body = got.body
        senders = got.senders
        inputs = await inputs_from(d, r, verifier, owner, senders) if verifier else [spb.Signed()] * len(senders)
        lacking = [s for s, signed in zip(senders, inputs) if not signed.body]
        if lacking:
            from_owner = dict(zip(lacking, await inputs_from(d, r, owner, owner, lacking)))
            inputs = [signed if signed.body else from_owner.get(s, spb.Signed()) for s, signed in zip(senders, inputs)]
        if verifier and inputs_hash(inputs) != body.inputs_hash:
            # a contributor may have sent the owner and the verifier different payloads: the owner's are the ones
            # its result must agree with
            inputs = await inputs_from(d, r, owner, owner, senders)
        contributions = []
        try:
            if len(inputs) != len(senders):
                raise PayloadError("coverage", "not every input could be had")
            if inputs_hash(inputs) != body.inputs_hash:
                raise PayloadError("signature", "inputs that are not the ones the owner named")
            for sender, signed in zip(senders, inputs):
                contributions.append(read_payload(signed, sender, d.layout, d.run.run_id, r, ranges))
        except (PayloadError, BadSigned) as exc:
            log.warning("round %d: cannot check the shard of %s (%s): its blocks are skipped here", r,
                        owner.hex()[-12:], exc)
            return ShardOutcome(owner, ranges, None, source=source, check="unverifiable")
        owner_ok, bits, blocks = await d.compute(
            lambda: judge_signs(d.signs, contributions, d.layout, ranges, body.sign_bits, body.nonzero_blocks))
        if owner_ok:
            if verdict is not None:
                self.accuse(spb.Evidence(accused=verifier, round=r, claim=verdict.signed, judged=got.signed,
                                         inputs=inputs))
            return self._outcome(owner, ranges, got, source, check="verified")
        self.accuse(spb.Evidence(accused=owner, round=r, claim=got.signed, inputs=inputs))
        if verdict is not None:
            claimed = (verdict.body.sign_bits, verdict.body.nonzero_blocks)
            verifier_ok, _, _ = await d.compute(
                lambda: judge_signs(d.signs, contributions, d.layout, ranges, *claimed))
            if verifier_ok:
                # every honest node that checks applies the verifier's signed bits: the same ones everywhere
                return self._outcome(owner, ranges, got, source, check="corrected", bits=claimed)
        return self._outcome(owner, ranges, got, source, check="recomputed", bits=(bits, blocks))
