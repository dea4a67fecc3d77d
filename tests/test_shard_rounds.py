"""The round protocol's pieces without a network, part two: an owner's shard, the verifier's judgement and audits,
state vouching, robust aggregation, inclusion bits and evidence (part one: tests/test_protocol_units.py)."""

import asyncio
import hashlib

import pytest
import torch

from demo_node.core import DeMo
from demo_node.swarm import shard_update
from demo_node.swarm.config import SIGN
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.included import inputs_hash, mask_of, senders_of
from demo_node.swarm.membership import Statements
from demo_node.swarm.outcome import RoundOutcome, ShardOutcome, restrict
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.plan import Member, make_plan
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.shard_update import judge_signs
from demo_node.swarm.signing import open_body, sign
from demo_node.swarm.state_sync import Snapshot, vouched
from demo_node.swarm.verifier import VerifierRound
from demo_node.wire.codec import encode
from demo_node.wire.errors import PayloadError, refusal_code
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs
from tests.protocol_helpers import KEY, PEERS, RUN, make_opt, statement


def owner_round(plan, me, opt, deadline, robust=True) -> OwnerRound:
    """``me``'s owner round of ``plan``, its signs computed in place (call inside a running event loop)."""
    signs = ShardSigns(opt.layout, opt.config.aggregation, robust=robust)

    async def compute(plan, contributions, ranges):
        return shard_update.compute(plan.mode, signs, contributions, opt.layout, ranges, run_id=RUN, round=plan.round,
                                    owner=me)

    return OwnerRound(plan, me, KEY[me], opt.layout, RUN, deadline, signs, compute, SwarmCounters())


def run_owner(plan, me, opt, requests, deadline=30.0, robust=True):
    async def main():
        owner = owner_round(plan, me, opt, deadline, robust)
        for sender, payload in requests:
            st = statement(sender, round=plan.round, plan=plan.fingerprint)
            owner.arrive(sender, False, st if me in plan.shares(sender) else None, payload)
        await asyncio.wait_for(owner.closed.wait(), deadline + 5)
        return owner, {s: spb.ShardResult.FromString(owner.serialize_for(s)) for s, _ in requests}

    return asyncio.run(main())


def signed_payload(contribution, plan, owner, sender, layout, round=0):
    data = encode(restrict(contribution, plan.ranges[owner]), layout, run_id=RUN, round=round, sender=sender)
    return sign(KEY[sender], data)


@pytest.mark.parametrize("mode", ["relay", "sign"])
def test_shard_results_apply_the_sample_weighted_aggregate(mode):
    """Two peers with different sample counts: every node applies exactly the sample-weighted aggregate, whether
    the owner relays the payloads or sends the signs."""
    base, _ = make_opt()
    replicas, contributions = [], []
    for seed, samples in ((1, 8), (2, 24)):
        params = [torch.nn.Parameter(p.detach().clone()) for p in base]
        opt = DeMo(params, lr=0.01, topk=6, chunk=32, values="int8")
        torch.manual_seed(seed)
        for p in params:
            p.grad = torch.randn_like(p)
        contributions.append(opt.prepare(samples=samples))
        replicas.append((params, opt))
    opt0 = replicas[0][1]
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1])], opt0.layout, 10, mode)
    results, sent = {}, {}
    for owner in plan.owners:
        reqs = [(PEERS[i], signed_payload(c, plan, owner, PEERS[i], opt0.layout)) for i, c in enumerate(contributions)]
        sent[owner] = dict(reqs)
        _, results[owner] = run_owner(plan, owner, replicas[plan.owners.index(owner)][1], reqs, robust=False)
    # what the math says: the aggregate of the two contributions, weighted by samples (robust aggregation off: it
    # would clip the larger contribution to the other's norm, see test_robust_aggregation_bounds_weights_and_norms)
    expected = [p.detach().clone() for p in base]
    ref_params = [torch.nn.Parameter(t) for t in expected]
    ref = DeMo(ref_params, lr=0.01, topk=6, chunk=32, values="int8")
    ref.apply(ref.aggregate(contributions))
    for i, (params, opt) in enumerate(replicas):
        shards = []
        for o in plan.owners:
            res = results[o][PEERS[i]]
            body = open_body(res.body, o, 0)
            senders = senders_of(plan.order, body.included)
            # the requester's own slot comes back empty: it has its payload (as the round driver fills it in)
            relayed = [sent[o][p] if p == PEERS[i] else r for p, r in zip(senders, res.relayed)]
            shards.append(ShardOutcome(o, plan.ranges[o], body, relayed, body.sign_bits, body.nonzero_blocks,
                                       senders=senders))
        outcome = RoundOutcome(0, plan, shards, contributions[i], [], Statements(), 0.0)
        assert shards[0].senders == list(plan.order) and shards[0].body.inputs_hash == inputs_hash(
            [sent[shards[0].owner][p] for p in plan.order])
        pieces, skipped = outcome.sign_pieces(ShardSigns(opt.layout, "selected", robust=False), opt.layout, RUN,
                                              PEERS[i])
        assert skipped == 0
        opt.apply_signs(pieces)
        assert not list(outcome.excluded_parts(PEERS[i]))
        for a, b in zip(params, ref_params):
            if mode == "relay":
                assert torch.equal(a.detach(), b.detach())
            else:  # sign bits: equal except where the update is exactly zero inside a moving block
                assert (a.detach() != b.detach()).float().mean() < 1e-3


def three_member_relay_round():
    """A round of three members in relay exchange: (an optimizer for its layout, the plan, its first owner, and a
    contribution to send)."""
    _, opt = make_opt()
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1]), Member(PEERS[2])], opt.layout, 10, "relay")
    params, o = make_opt(values="fp32")
    for p in params:
        p.grad = torch.randn_like(p)
    return opt, plan, plan.owners[0], o.prepare()


def test_owner_closes_at_deadline_without_a_dead_member_and_excludes_late_ones():
    opt, plan, owner, c = three_member_relay_round()
    data = signed_payload(c, plan, owner, PEERS[0], opt.layout)
    reqs = [(PEERS[0], data), (PEERS[1], None)]
    shard, results = run_owner(plan, owner, opt, reqs, deadline=0.5)  # PEERS[2] never comes
    body = open_body(results[PEERS[0]].body, owner, 0)
    assert senders_of(plan.order, body.included) == [PEERS[0]]
    # a late arrival changes nothing and is told so
    st = statement(PEERS[2], plan=plan.fingerprint)
    shard.arrive(PEERS[2], False, st, signed_payload(c, plan, owner, PEERS[2], opt.layout))
    late = spb.ShardResult.FromString(shard.serialize_for(PEERS[2]))
    assert late.refusal == refusal_code("round_closed") and late.body == results[PEERS[0]].body
    outcome = RoundOutcome(0, plan, [ShardOutcome(owner, plan.ranges[owner], body, senders=[PEERS[0]])], c, [],
                           Statements(), 0.0)
    assert len(list(outcome.excluded_parts(PEERS[2]))) == 1  # its contribution goes back into its momentum


def test_an_owner_stops_waiting_for_members_that_went_on_to_a_later_round():
    """A node that restarted (or fell behind) runs rounds its peers already gave up: it closes them as soon as every
    missing member is known to be past them, not a deadline later, and only its own arrival is awaited."""
    opt, plan, owner, c = three_member_relay_round()
    others = [p for p in PEERS[:3] if p != owner]

    async def main():
        shard = owner_round(plan, owner, opt, deadline=60.0)
        shard.passed(others[0])
        shard.passed(b"not a member")  # ignored: it was never awaited
        shard.arrive(others[1], False, None, signed_payload(c, plan, owner, others[1], opt.layout))
        await asyncio.sleep(0.05)
        assert not shard.closed.is_set()  # the owner's own arrival is still to come
        shard.arrive(owner, False, None, None)
        await asyncio.wait_for(shard.closed.wait(), 5)  # far before the 60 s deadline
        return shard

    shard = asyncio.run(main())
    assert shard.gone == {others[0]} and shard.included == [others[1]]


def test_an_owner_refuses_a_payload_signed_by_another_peer():
    _, opt = make_opt()
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1])], opt.layout, 10, "relay")
    owner = plan.owners[0]
    params, o = make_opt()
    for p in params:
        p.grad = torch.randn_like(p)
    c = o.prepare()
    theirs = signed_payload(c, plan, owner, PEERS[1], opt.layout)  # PEERS[1]'s payload, sent as PEERS[0]'s
    _, results = run_owner(plan, owner, opt, [(PEERS[0], theirs), (PEERS[1], None)])
    assert results[PEERS[0]].refusal in (refusal_code("signature"), refusal_code("sender"))
    assert senders_of(plan.order, open_body(results[PEERS[0]].body, owner, 0).included) == []


def test_a_verifier_catches_a_flipped_sign_but_forgives_rounding_at_ties():
    _, opt = make_opt()
    layout = opt.layout
    contributions = []
    for seed in (1, 2, 3):
        params, o = make_opt()
        torch.manual_seed(seed)
        for p in params:
            p.grad = torch.randn_like(p)
        contributions.append(o.prepare(samples=8))
    ranges = {b.index: (0, b.num_blocks) for b in layout.buckets}
    signs = ShardSigns(layout, "selected")
    values = signs.values(contributions)
    truth = {b: (start, torch.sign(v)) for b, (start, v) in values.items()}
    bits, nonzero = pack_signs(truth, ranges)
    assert judge_signs(signs, contributions, layout, ranges, bits, nonzero)[0]
    # flip the sign of the largest value: a lie
    b0, (start, v) = next(iter(values.items()))
    lie = {b: (s, t.clone()) for b, (s, t) in truth.items()}
    flat = v.abs().flatten().argmax()
    lie[b0][1].view(-1)[flat] *= -1
    ok, fixed_bits, fixed_blocks = judge_signs(signs, contributions, layout, ranges, *pack_signs(lie, ranges))
    assert not ok and (fixed_bits, fixed_blocks) == (bits, nonzero)
    # a value next to zero (an exact tie that another machine may round the other way) is forgiven
    tie = {b: (s, t.clone()) for b, (s, t) in truth.items()}
    nearly = values[b0][1].clone()
    nearly.view(-1)[flat] = 0.0  # judge against values where one entry is a tie
    signs_values = signs.values

    def with_tie(cs):
        out = signs_values(cs)
        out[b0][1].view(-1)[flat] = 1e-9 * float(v.abs().max())
        return out

    signs.values = with_tie
    tie[b0][1].view(-1)[flat] *= -1
    assert judge_signs(signs, contributions, layout, ranges, *pack_signs(tie, ranges))[0]


def three_member_sign_round():
    """A sign round of three members, each with its own gradients: (optimizer, plan, the first owner, its verifier,
    every member's signed payload to that owner, the owner's finished round)."""
    _, opt = make_opt()
    plan = make_plan(0, [Member(p) for p in PEERS[:3]], opt.layout, 10, SIGN)
    owner = plan.owners[0]
    payloads = {}
    for seed, peer in enumerate(PEERS[:3]):
        params, o = make_opt()
        torch.manual_seed(seed + 1)
        for p in params:
            p.grad = torch.randn_like(p)
        payloads[peer] = signed_payload(o.prepare(samples=8), plan, owner, peer, opt.layout)
    own, _ = run_owner(plan, owner, opt, list(payloads.items()))
    return opt, plan, owner, plan.verifiers[owner], payloads, own


def audit(fraction, withheld=(), lie=False, held=(), owner_withholds=()):
    """A three-member sign round whose verifier holds only its own payload and audits with ``fraction``: (the
    finding, and which peers the verifier asked for which senders' payloads). ``withheld``: contributors that answer
    with nothing; ``held``: contributors that never answer; ``owner_withholds``: senders whose payloads the owner
    will not serve."""
    opt, plan, owner, verifier, payloads, own = three_member_sign_round()
    signed = own.body
    if lie:
        body = spb.ShardBody.FromString(signed.body)
        body.sign_bits = bytes(b ^ 0xFF for b in body.sign_bits)
        signed = sign(KEY[owner], body.SerializeToString())
    asked = []

    async def fetch(peer, senders):
        asked.append((peer, list(senders)))
        if peer == owner:
            return [spb.Signed() if s in owner_withholds else payloads[s] for s in senders]
        if peer in held:
            await asyncio.Event().wait()
        return [spb.Signed() if peer in withheld else payloads[peer]]

    async def main():
        async def compute(fn):
            return fn()
        vr = VerifierRound(plan, owner, verifier, KEY[verifier], opt.layout, RUN,
                           ShardSigns(opt.layout, opt.config.aggregation), compute, audit_fraction=fraction,
                           audit_wait=0.3)
        vr.arrive(verifier, payloads[verifier])
        await asyncio.wait_for(vr.judge(signed, open_body(signed, owner, 0), fetch), 10)
        return spb.VerdictBody.FromString(vr.verdict.body).finding if vr.audited else None

    return asyncio.run(main()), asked, owner, verifier


def test_a_verifier_audits_a_drawn_fraction_of_rounds_with_inputs_from_their_senders():
    """Below 1 the verifier holds only its own payload: undrawn, it signs no verdict and asks nobody anything; drawn,
    it asks each other contributor for its own payload (the owner cannot withhold them), the owner only for those
    a contributor did not give, and judges as it would with every copy."""
    finding, asked, owner, verifier = audit(1e-12)
    assert finding is None and asked == []
    finding, asked, owner, verifier = audit(1 - 1e-12)
    others = [p for p in PEERS[:3] if p != verifier]
    assert finding == spb.VerdictBody.CORRECT and sorted(asked) == sorted((p, [p]) for p in others)
    withholder = next(p for p in others if p != owner)
    finding, asked, owner, verifier = audit(1 - 1e-12, withheld={withholder})
    assert finding == spb.VerdictBody.CORRECT and asked[-1] == (owner, [withholder])
    finding, asked, owner, verifier = audit(1 - 1e-12, held={withholder})  # holds the request: the owner is asked
    assert finding == spb.VerdictBody.CORRECT and asked[-1] == (owner, [withholder])
    finding, _, _, _ = audit(1 - 1e-12, lie=True)
    assert finding == spb.VerdictBody.WRONG


@pytest.mark.parametrize("fraction", [1.0, 1 - 1e-12], ids=["every-round", "audited"])
def test_an_owner_that_withholds_an_input_it_names_gets_a_withheld_verdict(fraction):
    """The owner's own input (nobody else holds it) or a colluder's that the colluder did not give the verifier:
    withheld, whatever the result says (here it lies too); a contributor that withholds its own input from an honest
    owner's verifier withholds nothing."""
    for lie in (False, True):
        finding, asked, owner, verifier = audit(fraction, owner_withholds=set(PEERS[:3]), withheld=set(PEERS[:3]),
                                                lie=lie)
        assert finding == spb.VerdictBody.WITHHELD
    colluder = next(p for p in PEERS[:3] if p not in (owner, verifier))
    finding, _, _, _ = audit(fraction, owner_withholds={colluder}, withheld={colluder})
    assert finding == spb.VerdictBody.WITHHELD
    finding, _, _, _ = audit(fraction, withheld={colluder})
    assert finding == spb.VerdictBody.CORRECT


def test_a_snapshot_is_vouched_only_by_most_members_two_at_least():
    def snap(digest, reports, members=3):
        statements = [statement(p, digest_round=5, digest=d) for p, d in reports]
        return Snapshot(5, digest, [Member(p) for p in PEERS[:members]], [], "{}", statements)

    good, bad = b"g" * 16, b"b" * 16
    assert vouched(snap(good, [(PEERS[0], good), (PEERS[1], good), (PEERS[2], bad)]), RUN) == ""
    assert vouched(snap(bad, [(PEERS[0], good), (PEERS[1], good), (PEERS[2], bad)]), RUN)
    assert vouched(snap(bad, [(PEERS[2], bad)]), RUN)  # the server alone vouches for its own state
    # ... even when it claims to be the swarm's only member: how many vouch is the downloader's to ask
    assert vouched(snap(bad, [(PEERS[2], bad)], members=1), RUN)
    assert vouched(snap(good, [(PEERS[0], good)], members=1), RUN, need=1) == ""  # it knows no other peer
    assert vouched(snap(good, [(PEERS[0], good), (PEERS[1], bad)]), RUN)  # one against one: undecided
    # a server that lists members of its own making (their keys its own) to vouch for its state: they count only
    # when the downloader knows them in the run (its DHT records, or the majority it saw in its rounds)
    forged = snap(bad, [(PEERS[2], bad), (PEERS[3], bad)], members=4)
    assert vouched(forged, RUN) == "" and vouched(forged, RUN, known={PEERS[0], PEERS[1], PEERS[2]})
    assert vouched(snap(good, [(PEERS[0], good), (PEERS[1], good)]), RUN, known={PEERS[0], PEERS[1]}) == ""
    assert vouched(snap(good, [(PEERS[0], good), (PEERS[3], good)]), RUN)  # PEERS[3] is not in the members list


def test_robust_aggregation_bounds_weights_and_norms():
    from demo_node.core.robust import screen

    contributions = []
    for seed in (1, 2, 3):
        params, o = make_opt(values="int8")
        torch.manual_seed(seed)
        for p in params:
            p.grad = torch.randn_like(p)
        contributions.append(o.prepare(samples=8))
    honest = screen(contributions, max_sample_weight=4096)
    assert honest.kept == [0, 1, 2] and honest.weights == [8.0, 8.0, 8.0] and not honest.rejected
    # an extreme weight is capped (4x the lower median, and the run's maximum), an extreme scale clipped to the
    # median norm, an overflowing one rejected
    heavy = contributions[0]
    heavy.samples = 1e300
    loud = contributions[1]
    for part in loud.parts.values():
        part.values.scales.mul_(1e30)
    kept = screen(contributions, max_sample_weight=4096)
    assert kept.weights[0] == 32.0 and kept.value_scales[1] < 1e-20
    for part in loud.parts.values():
        part.values.scales.fill_(3e38)  # 127 * 3e38 overflows float32: bounded in float64, clipped, kept
    out = screen(contributions + [contributions[2]], max_sample_weight=16)
    assert not out.rejected and out.weights[0] == 16.0 and out.value_scales[1] < 1e-40
    broken = restrict(contributions[2], {b: (p.start, p.stop) for b, p in contributions[2].parts.items()})
    from demo_node.core.quantize import QuantizedValues
    first = next(iter(broken.parts.values()))
    first.values = QuantizedValues("fp32", torch.full_like(first.values.dequantize(), float("inf")))
    assert screen(contributions + [broken], max_sample_weight=16).rejected == {3: "unbounded"}
    signs = ShardSigns(make_opt()[1].layout, "selected")
    update = signs.signs(contributions)
    assert all(torch.isfinite(s).all() and s.abs().max() <= 1 for _, s in update.values())


def test_inclusion_bits_name_members_in_order_and_refuse_stray_bits():
    order = sorted(PEERS)
    assert senders_of(order, mask_of(order, [order[2], order[0]])) == [order[0], order[2]]
    assert senders_of(order, mask_of(order, [])) == []
    with pytest.raises(PayloadError):
        senders_of(order, b"\x01\x00")  # a byte too many
    with pytest.raises(PayloadError):
        senders_of(order, bytes([1 << len(order)]))  # a bit past the last member


def test_evidence_holds_only_for_what_the_accused_signed_against_its_inputs():
    """Each kind of evidence proves a lie on its own (signed claims, signed inputs), and nothing else passes:
    an honest owner's body, a correct verdict, one body twice, claims signed by someone else, another round."""
    from demo_node.swarm.evidence import holds

    opt, plan, owner, verifier, payloads, own = three_member_sign_round()
    honest = own.body
    body = spb.ShardBody.FromString(honest.body)
    body.sign_bits = bytes(b ^ 0xFF for b in body.sign_bits)
    lied = sign(KEY[owner], body.SerializeToString())
    inputs = [payloads[p] for p in senders_of(plan.order, body.included)]
    signs = ShardSigns(opt.layout, opt.config.aggregation)

    def verdict(judged, finding, by=verifier):
        v = spb.VerdictBody(round=0, owner=owner, verifier=by, finding=finding, plan=plan.fingerprint,
                            body_hash=hashlib.sha256(judged.body).digest())
        return sign(KEY[by], v.SerializeToString())

    def ok(kind, claim, judged=spb.Signed(), inputs=(), accused=owner, round=0, p=plan):
        ev = spb.Evidence(kind=kind, accused=accused, round=round, claim=claim, judged=judged, inputs=list(inputs))
        return holds(ev, p, opt.layout, RUN, signs)

    K = spb.Evidence
    assert ok(K.LIE, lied, inputs=inputs) and not ok(K.LIE, honest, inputs=inputs)
    assert not ok(K.LIE, lied, inputs=inputs[:1])  # not the inputs the claim names
    assert not ok(K.LIE, lied, inputs=inputs, round=1)
    wrong_on_honest = verdict(honest, spb.VerdictBody.WRONG)
    assert ok(K.FALSE_VERDICT, wrong_on_honest, honest, inputs, accused=verifier)
    assert not ok(K.FALSE_VERDICT, verdict(lied, spb.VerdictBody.WRONG), lied, inputs, accused=verifier)
    assert not ok(K.FALSE_VERDICT, verdict(honest, spb.VerdictBody.CORRECT), honest, inputs, accused=verifier)
    assert ok(K.BODY_EQUIVOCATION, honest, lied) and not ok(K.BODY_EQUIVOCATION, honest, honest)
    forged = sign(KEY[verifier], body.SerializeToString())  # a body in the owner's name, signed by another
    assert not ok(K.BODY_EQUIVOCATION, honest, forged)
    assert ok(K.VERDICT_EQUIVOCATION, verdict(honest, spb.VerdictBody.CORRECT),
              verdict(honest, spb.VerdictBody.WITHHELD), accused=verifier)
    assert not ok(K.VERDICT_EQUIVOCATION, verdict(honest, spb.VerdictBody.CORRECT),
                  verdict(honest, spb.VerdictBody.CORRECT), accused=verifier)
    other = make_plan(0, [Member(p) for p in PEERS[:4]], opt.layout, 10, SIGN)
    assert not ok(K.BODY_EQUIVOCATION, honest, lied, p=other)  # about another plan of the round: proves nothing here
    assert not ok(K.KIND_UNSPECIFIED, honest, lied)
