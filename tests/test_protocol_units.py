"""The round protocol's pieces without a network: plans, signed statements, an owner's shard, membership, the
verifier's judgement, state vouching, outcomes, sign bits."""

import asyncio
import hashlib

import pytest
import torch

from demo_node.core import DeMo
from demo_node.crypto import Identity
from demo_node.swarm.config import RELAY, SIGN
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.included import inputs_hash, mask_of, omitting, senders_of
from demo_node.swarm.membership import (Statements, accusers_of, collect, digest_majority, majority_decides,
                                        next_members)
from demo_node.swarm.outcome import RoundOutcome, ShardOutcome, restrict
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.plan import Member, choose_mode, make_plan, split
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.signing import BadSigned, open_body, open_statement, sign
from demo_node.swarm.standing import BENCH_ROUNDS, OMITTED, SILENT, WITHHELD, Standing
from demo_node.swarm.state_sync import Snapshot, vouched
from demo_node.swarm import shard_update
from demo_node.swarm.shard_update import judge_signs
from demo_node.swarm.verifier import VerifierRound
from demo_node.wire.codec import encode
from demo_node.wire.errors import PayloadError, refusal_code
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs, unpack_signs

IDS = sorted((Identity.generate()[0] for _ in range(4)), key=lambda i: i.peer_id)
PEERS = [i.peer_id for i in IDS]
KEY = dict(zip(PEERS, IDS))
RUN = "run"


def make_opt(seed=0, values="fp32"):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(64, 96)), torch.nn.Parameter(torch.randn(96))]
    opt = DeMo(params, lr=0.01, topk=6, chunk=32, values=values)
    return params, opt


def statement(peer: bytes, round: int = 0, **fields) -> spb.Signed:
    st = spb.Statement(peer=peer, run_id=RUN, round=round, **fields)
    return sign(KEY[peer], st.SerializeToString())


def test_split_covers_everything_evenly():
    for n in range(0, 40):
        for parts in range(1, 7):
            runs = split(n, parts)
            assert runs[0][0] == 0 and runs[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
            assert max(b - a for a, b in runs) - min(b - a for a, b in runs) <= 1


def test_plan_is_the_same_for_any_member_order_and_skips_clients():
    _, opt = make_opt()
    members = [Member(PEERS[2]), Member(PEERS[0], client=True), Member(PEERS[1])]
    p1 = make_plan(5, members, opt.layout, 1000)
    p2 = make_plan(5, list(reversed(members)), opt.layout, 1000)
    assert p1 == p2 and p1.fingerprint == p2.fingerprint
    assert make_plan(5, members[:2], opt.layout, 1000).fingerprint != p1.fingerprint
    assert p1.owners == (PEERS[1], PEERS[2])
    for spec in opt.layout.buckets:
        covered = sorted(p1.ranges[o][spec.index] for o in p1.owners if spec.index in p1.ranges[o])
        assert covered[0][0] == 0 and covered[-1][1] == spec.num_blocks
    with pytest.raises(ValueError, match="no member"):
        make_plan(1, [Member(PEERS[0], client=True)], opt.layout, 1000)


def test_statement_shares_and_verifiers():
    _, opt = make_opt()
    plan = make_plan(0, [Member(p) for p in PEERS], opt.layout, 10, SIGN)
    # an owner's own statement is passed on by the next two owners; every peer's by two owners
    n = len(plan.owners)
    assert [plan.shares(o) for o in plan.owners] == [(plan.owners[(i + 1) % n], plan.owners[(i + 2) % n])
                                                     for i in range(n)]
    assert all(len(plan.shares(p)) == 2 for p in PEERS)
    assert plan.verifiers == {o: plan.owners[(i + 1) % 4] for i, o in enumerate(plan.owners)}
    # verifiers rotate: over n - 1 rounds every owner is verified once by each other owner, and each verifies one
    rotation = [make_plan(r, [Member(p) for p in PEERS], opt.layout, 10, SIGN).verifiers for r in range(5, 8)]
    for o in plan.owners:
        assert sorted(v[o] for v in rotation) == sorted(set(plan.owners) - {o})
    assert all(sorted(v.values()) == sorted(plan.owners) for v in rotation)
    assert make_plan(0, [Member(p) for p in PEERS[:2]], opt.layout, 10, SIGN).verifiers == {}
    # relay exchange has verifiers too (they vouch for one body per shard); two members have none
    assert make_plan(0, [Member(p) for p in PEERS], opt.layout, 10, RELAY).verifiers == plan.verifiers
    assert make_plan(0, [Member(p) for p in PEERS], opt.layout, 10, SIGN, verify=False).verifiers == {}


def test_mode_choice_crosses_over_with_the_round_size():
    payload, signs = 245_000, 1_362_000  # the benchmark GPT: int8 payload, one bit per parameter
    modes = {n: choose_mode(n, payload, signs, "auto") for n in range(1, 12)}
    assert modes[2] == RELAY and modes[11] == SIGN
    first_sign = min(n for n, m in modes.items() if m == SIGN)
    assert 6 <= first_sign <= 8  # where (n-1) payloads exceed one payload plus the sign bits
    assert choose_mode(2, payload, signs, "sign") == SIGN


def test_sign_bits_round_trip():
    _, opt = make_opt()
    layout = opt.layout
    ranges = {b.index: (1, b.num_blocks) for b in layout.buckets}
    signs = {b.index: (1, torch.sign(torch.randn(b.num_blocks - 1, b.h, b.w))) for b in layout.buckets}
    signs[0][1][0].zero_()  # a block that moves nothing
    bits, nonzero = pack_signs(signs, ranges)
    back = unpack_signs(bits, nonzero, layout, ranges)
    for b in signs:
        assert torch.equal(back[b][1], signs[b][1])


def test_statements_are_opened_only_with_their_own_peers_signature():
    good = statement(PEERS[0], digest=b"d" * 32)
    assert open_statement(good, run_id=RUN, round=0, peer=PEERS[0]).digest == b"d" * 32
    forged = spb.Signed(body=spb.Statement(peer=PEERS[0], run_id=RUN, digest=b"x" * 32).SerializeToString(),
                        signature=good.signature)
    with pytest.raises(BadSigned, match="signature"):
        open_statement(forged, run_id=RUN)
    by_other = sign(KEY[PEERS[1]], spb.Statement(peer=PEERS[0], run_id=RUN).SerializeToString())
    with pytest.raises(BadSigned, match="signature"):
        open_statement(by_other, run_id=RUN)
    with pytest.raises(BadSigned, match="statement"):
        open_statement(good, run_id=RUN, peer=PEERS[1])  # sent on another peer's stream
    with pytest.raises(BadSigned, match="statement"):
        open_statement(good, run_id="another-run")
    with pytest.raises(BadSigned):
        open_statement(spb.Signed(body=b"\xff\xff"), run_id=RUN)


def test_digest_majority_from_signed_statements_ties_go_to_the_smallest_peer():
    st = Statements()
    for peer, d in zip(PEERS, [b"x", b"y", b"y", b"z"]):
        signed = statement(peer, digest_round=3, digest=d)
        st.add(signed, open_statement(signed, run_id=RUN))
    assert digest_majority(st, set(PEERS), 3) == (b"y", [PEERS[1], PEERS[2]])
    assert digest_majority(st, set(PEERS[:2]), 3) == (b"x", [PEERS[0]])
    assert digest_majority(st, set(PEERS), 4) is None
    # a peer that signs two different statements for one round counts for nothing
    twice = statement(PEERS[1], digest_round=3, digest=b"x")
    st.add(twice, open_statement(twice, run_id=RUN))
    assert digest_majority(st, set(PEERS), 3)[1] == [PEERS[0]]


def test_a_tie_of_single_reports_makes_nobody_download_unless_the_swarm_is_two():
    """Three members, one statement missing for the round (its signer reported an older round): the attacker's
    digest and an honest node's tie 1-1, and the tie goes to the smaller peer id. That must not make the honest node
    take the attacker's state (a CI run caught an honest node resyncing from an attacker so)."""
    st = Statements()
    attacker, honest, silent = sorted(PEERS[:3])
    for peer, d in ((attacker, b"bad"), (honest, b"good")):
        signed = statement(peer, digest_round=8, digest=d)
        st.add(signed, open_statement(signed, run_id=RUN))
    majority = digest_majority(st, {attacker, honest, silent}, 8)
    assert majority == (b"bad", [attacker])  # the tie-break alone would pick the attacker
    assert not majority_decides(majority[1], {attacker, honest, silent})
    assert majority_decides(majority[1], {attacker, honest}, honest)  # two members: no one else to ask
    # ... but of two, the one that joined later takes the other's state, whatever their peer ids
    assert not majority_decides(majority[1], {attacker, honest}, honest, {honest: 0, attacker: 12})
    assert majority_decides(majority[1], {attacker, honest}, honest, {honest: 12, attacker: 0})
    assert majority_decides(majority[1], {attacker, honest}, honest, {honest: 5, attacker: 5})  # together: peer id
    two = statement(silent, digest_round=8, digest=b"bad")
    st.add(two, open_statement(two, run_id=RUN))
    assert majority_decides(digest_majority(st, {attacker, honest, silent}, 8)[1], {attacker, honest, silent})


def bodies_with(plan, statements: dict[bytes, spb.Signed], lose: set = frozenset()):
    """Shard bodies as owners would build them: each passes on its share of the statements."""
    out = {}
    for o in plan.owners:
        if o in lose:
            out[o] = None
            continue
        body = spb.ShardBody(round=plan.round, owner=o)
        body.statements.extend(s for p, s in sorted(statements.items()) if o in plan.shares(p))
        out[o] = body
    return out


def test_membership_comes_from_signed_statements_only():
    _, opt = make_opt()
    members = [Member(p) for p in PEERS[:3]]
    plan = make_plan(0, members, opt.layout, 10, SIGN)
    stmts = {PEERS[0]: statement(PEERS[0]), PEERS[1]: statement(PEERS[1], leaving=True),
             PEERS[3]: statement(PEERS[3], joining=True)}
    statements, lost = collect(plan, RUN, bodies_with(plan, stmts))
    # 0 present, 1 leaves, 2 absent (its share's owner passed on no statement of it), 3 joins
    assert [m.peer for m in next_members(plan, members, statements, lost, Standing())] == [PEERS[0], PEERS[3]]
    # an owner cannot slip in a statement it forged: it is dropped, and the peer counts as absent
    forged = spb.Signed(body=spb.Statement(peer=PEERS[2], run_id=RUN, round=0).SerializeToString(),
                        signature=b"\x00" * 64)
    statements, lost = collect(plan, RUN, bodies_with(plan, {**stmts, PEERS[2]: forged}))
    assert PEERS[2] not in statements.by_peer
    # a share whose result nobody got is unknown: its peers stay, one round (not two in a row)
    standing = Standing()
    statements, lost = collect(plan, RUN, bodies_with(plan, stmts, lose={plan.shares(PEERS[2])[0]}))
    assert PEERS[2] in [m.peer for m in next_members(plan, members, statements, lost, standing)]
    assert PEERS[2] not in [m.peer for m in next_members(plan, members, statements, lost, standing)]
    # one owner that leaves a statement out hides nobody: the other owner of that share passes it on
    first, second = plan.shares(PEERS[0])
    bodies = bodies_with(plan, stmts)
    del bodies[first].statements[:]
    statements, lost = collect(plan, RUN, bodies)
    assert PEERS[0] in [m.peer for m in next_members(plan, members, statements, lost, Standing())]


def test_a_dead_peer_of_a_two_node_swarm_is_dropped_after_two_rounds():
    """Two members: a dead peer's statement has two sharers, the living owner (which never saw it) and its own shard
    (lost): unknown, so it stays a round, and is dropped the round after."""
    _, opt = make_opt()
    members = [Member(p) for p in PEERS[:2]]
    plan = make_plan(0, members, opt.layout, 10, SIGN)
    alive, dead = PEERS[0], PEERS[1]
    standing = Standing()
    for expect in ([alive, dead], [alive]):
        statements, lost = collect(plan, RUN, bodies_with(plan, {alive: statement(alive)}, lose={dead}))
        assert [m.peer for m in next_members(plan, members, statements, lost, standing)] == expect


def test_accusations_demote_only_with_most_members_and_never_the_last_owner():
    """More than half of the other members (two at least) must accuse: two colluders among five demote nobody,
    three members do; demotion lasts; the last owner is kept."""
    _, opt = make_opt()
    members = sorted([Member(p) for p in PEERS] + [Member(b"\x00" * 8)])
    victim, liars = PEERS[0], PEERS[1:3]
    standing = Standing()
    assert standing.demote_accused({victim: set(liars)}, members, 0) == set()
    assert standing.demote_accused({victim: {PEERS[1]}}, members[:3], 0) == set()
    assert standing.demote_accused({victim: set(PEERS[1:4])}, members, 0) == {victim}
    assert standing.demote_accused({victim: set(PEERS)}, members, 1) == set() and victim in standing.demoted
    # every owner accused by everyone else: the last one that could own stays
    three = [Member(p) for p in PEERS[:3]]
    s = Standing()
    assert s.demote_accused({p: set(PEERS[:3]) - {p} for p in PEERS[:3]}, three, 0) == set(PEERS[:2])
    assert s.roles(three, 1) == [Member(PEERS[0], True), Member(PEERS[1], True), Member(PEERS[2], False)]
    # accusations come from the round's statements, and only members' count
    plan = make_plan(0, three, opt.layout, 10, SIGN)
    stmts = {p: statement(p, accused=[PEERS[0]]) for p in PEERS[1:4]}
    statements, _ = collect(plan, RUN, bodies_with(plan, stmts))
    assert accusers_of(plan, statements) == {PEERS[0]: {PEERS[1], PEERS[2]}}


def test_faults_bench_a_silent_owner_and_demote_one_that_cheats_twice():
    members = [Member(p) for p in PEERS[:3]]
    owners = tuple(PEERS[:3])
    s = Standing()
    a, b, c = PEERS[:3]
    assert s.record_faults(0, owners, {a: SILENT, b: OMITTED}, members) == {}
    assert s.record_faults(1, owners, {a: SILENT, b: WITHHELD}, members) == {a: "benched", b: "demoted"}
    assert s.benched[a] == 2 + BENCH_ROUNDS and b in s.demoted
    assert [m.peer for m in s.roles(members, 5) if not m.client] == [c]
    # a fault-free round in between breaks a streak; the bench ends, and the next one lasts twice as long
    assert s.record_faults(2, owners, {c: SILENT}, members) == {}
    assert s.record_faults(3, owners, {}, members) == {} and c not in s.streaks
    s.record_faults(2 + BENCH_ROUNDS - 1, owners, {}, members)
    assert s.owns(a, 2 + BENCH_ROUNDS) and a not in s.benched
    r = 40
    s.record_faults(r, owners, {a: SILENT}, members)
    assert s.record_faults(r + 1, owners, {a: SILENT}, members) == {a: "benched"}
    assert s.benched[a] == r + 2 + 2 * BENCH_ROUNDS
    # the last owner that could own is never benched; the books survive a state transfer
    lone = Standing(demoted={b}, benched={a: 999})
    lone.record_faults(50, owners, {c: SILENT}, members)
    assert lone.record_faults(51, owners, {c: SILENT}, members) == {} and lone.owns(c, 52)
    assert Standing.from_proto(s.to_proto()) == s


def test_an_owner_that_leaves_out_most_contributions_on_time_is_caught_by_the_others_results():
    a, b, c, d = PEERS
    assert omitting({a: [a, b, c], b: [a, b, c], c: [c]}) == {c}  # the censor keeps only its own
    assert omitting({a: [a, b, c], b: [a, b, c], c: [a, c]}) == set()  # one late link: allowed
    # two colluders that send to everyone but one honest owner make it miss two of five: allowed
    five = [a, b, c, d, b"e"]
    assert omitting({o: (five if o != a else [a, b, c]) for o in five}) == set()
    assert omitting({a: [a], b: [b]}) == set()  # two results: no telling
    assert omitting({a: [], b: [], c: []}) == set()


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
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1])], opt0.layout, 1000, mode)
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
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1]), Member(PEERS[2])], opt.layout, 1000, "relay")
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
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1])], opt.layout, 1000, "relay")
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


def audit(fraction, withheld=(), lie=False, held=(), owner_withholds=()):
    """A three-member sign round whose verifier holds only its own payload and audits with ``fraction``: (the
    finding, and which peers the verifier asked for which senders' payloads). ``withheld``: contributors that answer
    with nothing; ``held``: contributors that never answer; ``owner_withholds``: senders whose payloads the owner
    will not serve."""
    _, opt = make_opt()
    plan = make_plan(0, [Member(p) for p in PEERS[:3]], opt.layout, 10, SIGN)
    owner = plan.owners[0]
    verifier = plan.verifiers[owner]
    payloads = {}
    for seed, peer in enumerate(PEERS[:3]):
        params, o = make_opt()
        torch.manual_seed(seed + 1)
        for p in params:
            p.grad = torch.randn_like(p)
        payloads[peer] = signed_payload(o.prepare(samples=8), plan, owner, peer, opt.layout)
    own, _ = run_owner(plan, owner, opt, list(payloads.items()))
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

    _, opt = make_opt()
    plan = make_plan(0, [Member(p) for p in PEERS[:3]], opt.layout, 10, SIGN)
    owner = plan.owners[0]
    verifier = plan.verifiers[owner]
    payloads = {}
    for seed, peer in enumerate(PEERS[:3]):
        params, o = make_opt()
        torch.manual_seed(seed + 1)
        for p in params:
            p.grad = torch.randn_like(p)
        payloads[peer] = signed_payload(o.prepare(samples=8), plan, owner, peer, opt.layout)
    own, _ = run_owner(plan, owner, opt, list(payloads.items()))
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
