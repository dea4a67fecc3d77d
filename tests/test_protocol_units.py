"""The round protocol's pieces without a network: plans, an owner's shard, outcomes, sign bits, digests."""

import asyncio

import pytest
import torch

from demo_node.core import DeMo
from demo_node.swarm.config import RELAY, SIGN
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.driver import majority_digest
from demo_node.swarm.outcome import RoundOutcome, ShardOutcome, restrict
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.plan import Member, choose_mode, make_plan, split
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.codec import encode
from demo_node.wire.errors import refusal_code
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs, unpack_signs

PEERS = [bytes([i]) * 34 for i in range(1, 5)]


def make_opt(seed=0, values="fp32"):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(64, 96)), torch.nn.Parameter(torch.randn(96))]
    opt = DeMo(params, lr=0.01, topk=6, chunk=32, values=values)
    return params, opt


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


def test_majority_digest_ties_go_to_the_smallest_peer():
    p = [spb.Presence(peer=PEERS[i], digest_round=3, digest=d) for i, d in enumerate([b"x", b"y", b"y", b"z"])]
    assert majority_digest(p, 3) == (b"y", [PEERS[1], PEERS[2]])
    assert majority_digest(p[:2], 3) == (b"x", [PEERS[0]])
    assert majority_digest(p, 4) is None


def run_owner(plan, me, opt, requests, deadline=30.0):
    async def main():
        signs = ShardSigns(opt.layout, opt.config.aggregation)

        async def compute(contributions, ranges):
            return pack_signs(signs.signs(contributions), ranges)

        owner = OwnerRound(plan, me, opt.layout, "run", deadline, compute, SwarmCounters())
        for sender, msg in requests:
            owner.arrive(sender, msg)
        await asyncio.wait_for(owner.closed.wait(), deadline + 5)
        return owner, {s: spb.ShardResult.FromString(owner.serialize_for(s)) for s, _ in requests}

    return asyncio.run(main())


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
    payloads = {}
    for owner in plan.owners:
        payloads[owner] = {
            PEERS[i]: encode(restrict(c, plan.ranges[owner]), opt0.layout, run_id="run", round=0, sender=PEERS[i])
            for i, c in enumerate(contributions)
        }
    results = {}
    for owner in plan.owners:
        reqs = [(PEERS[i], spb.Contribute(round=0, payload=payloads[owner][PEERS[i]])) for i in range(2)]
        _, results[owner] = run_owner(plan, owner, replicas[plan.owners.index(owner)][1], reqs)
    # what the math says: the aggregate of the two contributions, weighted by samples
    expected = [p.detach().clone() for p in base]
    ref_params = [torch.nn.Parameter(t) for t in expected]
    ref = DeMo(ref_params, lr=0.01, topk=6, chunk=32, values="int8")
    ref.apply(ref.aggregate(contributions))
    for i, (params, opt) in enumerate(replicas):
        shards = [ShardOutcome(o, plan.ranges[o], results[o][PEERS[i]]) for o in plan.owners]
        outcome = RoundOutcome(0, plan, shards, contributions[i], [], [], 0.0)
        assert [inc.samples for inc in shards[0].result.included] == [8.0, 24.0]
        pieces, skipped = outcome.sign_pieces(ShardSigns(opt.layout, "selected"), opt.layout, "run", PEERS[i])
        assert skipped == 0
        opt.apply_signs(pieces)
        assert not list(outcome.excluded_parts(PEERS[i]))
        for a, b in zip(params, ref_params):
            if mode == "relay":
                assert torch.equal(a.detach(), b.detach())
            else:  # sign bits: equal except where the update is exactly zero inside a moving block
                assert (a.detach() != b.detach()).float().mean() < 1e-3


def test_owner_closes_at_deadline_without_a_dead_member_and_excludes_late_ones():
    _, opt = make_opt()
    plan = make_plan(0, [Member(PEERS[0]), Member(PEERS[1]), Member(PEERS[2])], opt.layout, 1000, "relay")
    owner = plan.owners[0]
    params, o = make_opt(values="fp32")
    for p in params:
        p.grad = torch.randn_like(p)
    c = o.prepare()
    data = encode(restrict(c, plan.ranges[owner]), opt.layout, run_id="run", round=0, sender=PEERS[0])
    reqs = [(PEERS[0], spb.Contribute(round=0, payload=data)), (PEERS[1], spb.Contribute(round=0))]
    shard, results = run_owner(plan, owner, opt, reqs, deadline=0.5)  # PEERS[2] never comes
    res = results[PEERS[0]]
    assert [i.sender for i in res.included] == [PEERS[0]]
    assert {p.peer for p in res.present} == {PEERS[0], PEERS[1]}
    # a late arrival changes nothing and is told so
    shard.arrive(PEERS[2], spb.Contribute(round=0, payload=data))
    late = spb.ShardResult.FromString(shard.serialize_for(PEERS[2]))
    assert late.refusal == refusal_code("round_closed") and [i.sender for i in late.included] == [PEERS[0]]
    outcome = RoundOutcome(0, plan, [ShardOutcome(owner, plan.ranges[owner], late)], c, [], [], 0.0)
    assert len(list(outcome.excluded_parts(PEERS[2]))) == 1  # its contribution goes back into its momentum
