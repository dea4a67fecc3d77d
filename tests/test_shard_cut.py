"""Sparse exchange's shard update (swarm/shard_cut.py): the cut an owner signs, what every node applies of it, and
what its verifier accepts: the same cut or another machine's rounding of it, never a lie."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.optimizer import DeMo
from demo_node.core.quantize import QuantizedValues, quantize
from demo_node.core.resparsify import top_per_block
from demo_node.swarm import shard_cut
from demo_node.swarm.shard_cut import compute_cut, cut_signs, judge_cut, read_cut
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.codec import encode
from demo_node.wire.errors import PayloadError

OWNER, RUN, ROUND = b"\x01owner", "cut-test", 7


@pytest.fixture(params=["int8", "sign"], autouse=True)
def cut_values(request, monkeypatch):
    """Every test runs with each value coding a cut can have."""
    monkeypatch.setattr(shard_cut, "CUT_VALUES", request.param)
    return request.param


def contributions(peers: int = 4, seed: int = 0):
    """(layout, every peer's contribution for the whole model, the ranges of the whole model)."""
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(64, 96)), torch.nn.Parameter(torch.randn(96))]
    opt = DeMo(params, lr=0.01, topk=8, chunk=32)
    out = []
    for i in range(peers):
        torch.manual_seed(seed * 100 + i)
        for p in params:
            p.grad = torch.randn_like(p)
        out.append(opt.prepare(samples=4))
    ranges = {b.index: (0, b.num_blocks) for b in opt.layout.buckets}
    return opt.layout, out, ranges


def cut_of(signs, layout, cs, **kw):
    return compute_cut(signs, cs, layout, run_id=RUN, round=ROUND, owner=kw.get("owner", OWNER))


def judged(signs, layout, cs, ranges, cut):
    return judge_cut(signs, cs, layout, run_id=RUN, round=ROUND, owner=OWNER, ranges=ranges, cut=cut)


def reencoded(cut, layout, ranges, change):
    """The cut with ``change(bucket part) -> bucket part`` applied to its first bucket, signed again as the
    owner's."""
    got = read_cut(cut, layout, run_id=RUN, round=ROUND, owner=OWNER, ranges=ranges)
    first = min(got.parts)
    parts = {b: change(p) if b == first else p for b, p in got.parts.items()}
    return encode(Contribution(parts, got.samples), layout, run_id=RUN, round=ROUND, sender=OWNER)


def test_every_node_applies_the_signs_of_the_aggregates_top_k_per_block():
    layout, cs, ranges = contributions()
    signs = ShardSigns(layout, "selected")
    cut = cut_of(signs, layout, cs)
    assert cut == cut_of(ShardSigns(layout, "selected"), layout, cs)  # a pure function of the inputs
    applied = cut_signs(signs, cut, layout, run_id=RUN, round=ROUND, owner=OWNER, ranges=ranges)
    agg = signs.aggregate(cs)
    for b, part in agg.parts.items():
        spec = layout.buckets[b]
        top = top_per_block(part, spec.block_size, spec.k)
        sent = type(top)(top.start, top.indices, quantize(top.coeff, shard_cut.CUT_VALUES).dequantize())
        direct = ShardSigns(layout, "selected").inverse_signs(type(agg)({b: sent}, 1, 1.0))[b][1]
        # the wire's float32 and the decoder's arithmetic may differ next to zero, nowhere else
        assert (applied[b][1] == direct).float().mean() > 0.99
        assert applied[b][0] == part.start
    assert judged(signs, layout, cs, ranges, cut) == (True, cut)


def test_a_verifier_accepts_another_machines_rounding_of_the_inputs():
    layout, cs, ranges = contributions(seed=1)
    signs = ShardSigns(layout, "selected")
    # the owner's arithmetic differs in the last bits (another summation order, another chip)
    nudged = [Contribution({b: BucketPart(p.start, p.indices,
                                          QuantizedValues("fp32", p.values.dequantize() * (1 + 3e-7)))
                            for b, p in c.parts.items()}, c.samples) for c in cs]
    cut = cut_of(signs, layout, nudged)
    ok, truth = judged(signs, layout, cs, ranges, cut)
    assert ok


@pytest.mark.parametrize("lie", ["negated", "one_index_moved", "scale_off", "other_owner", "other_round"])
def test_a_verifier_rejects_a_cut_that_is_not_the_inputs(lie):
    layout, cs, ranges = contributions(seed=2)
    signs = ShardSigns(layout, "selected")
    cut = cut_of(signs, layout, cs)

    def negated(p):
        v = p.values
        return BucketPart(p.start, p.indices, QuantizedValues(v.mode, ~v.codes if v.mode == "sign" else -v.codes,
                                                               v.scales))

    def one_index_moved(p):
        idx = p.indices.clone()
        spare = sorted(set(range(layout.buckets[0].block_size)) - set(idx[0].tolist()))
        # the smallest kept coefficient of block 0 swapped for one the aggregate does not have: far from a tie
        idx[0, 0] = spare[-1]
        order = idx[0].argsort()
        idx[0] = idx[0][order]
        codes = p.values.codes.clone()
        codes[0] = codes[0][order]
        return BucketPart(p.start, idx, QuantizedValues(p.values.mode, codes, p.values.scales))

    def scale_off(p):
        v = p.values
        if v.mode == "sign":  # a zero scale voids every block
            return BucketPart(p.start, p.indices, QuantizedValues(v.mode, v.codes, torch.zeros_like(v.scales)))
        # codes of 0 with a huge step: every value "rounds" to nothing
        return BucketPart(p.start, p.indices, QuantizedValues(v.mode, torch.zeros_like(v.codes), v.scales * 1000))

    if lie == "other_owner":
        bad = cut_of(signs, layout, cs, owner=b"\x02someone")
    elif lie == "other_round":
        bad = compute_cut(signs, cs, layout, run_id=RUN, round=ROUND + 1, owner=OWNER)
    else:
        change = {"negated": negated, "one_index_moved": one_index_moved, "scale_off": scale_off}[lie]
        bad = reencoded(cut, layout, ranges, change)
    assert bad != cut
    ok, truth = judged(signs, layout, cs, ranges, bad)
    assert not ok and truth == cut


def test_an_empty_or_garbled_cut_is_a_payload_error_for_every_node():
    layout, cs, ranges = contributions(seed=3)
    signs = ShardSigns(layout, "selected")
    cut = cut_of(signs, layout, cs)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=256),
                     st.builds(lambda i, b: cut[:i] + bytes([b]) + cut[i + 1:], st.integers(0, len(cut) - 1),
                               st.integers(0, 255)),
                     st.builds(lambda i: cut[:i], st.integers(0, len(cut) - 1))))
    def check(data):
        try:
            cut_signs(signs, data, layout, run_id=RUN, round=ROUND, owner=OWNER, ranges=ranges)
        except PayloadError:
            pass
        ok, truth = judged(signs, layout, cs, ranges, data)
        assert truth == cut
        assert isinstance(ok, bool)

    check()


def test_a_run_with_a_wider_cut_keeps_cut_topk_per_block_and_judges_by_it():
    layout, cs, ranges = contributions()
    wide = dataclasses.replace(layout, cut_topk=3 * layout.topk)
    signs = ShardSigns(wide, "selected")
    cut = cut_of(signs, wide, cs)
    got = read_cut(cut, wide, run_id=RUN, round=ROUND, owner=OWNER, ranges=ranges)
    for b, part in got.parts.items():
        assert part.indices.shape[1] == min(3 * layout.topk, layout.buckets[b].block_size)
    assert judged(signs, wide, cs, ranges, cut) == (True, cut)
    # a cut of the payloads' top-k in a run whose cut is wider is a lie (it drops coefficients the run keeps), and
    # a wider one than the run's does not even decode
    narrow = cut_of(ShardSigns(layout, "selected"), layout, cs)
    assert judged(signs, wide, cs, ranges, narrow)[0] is False
    with pytest.raises(PayloadError):
        read_cut(cut, layout, run_id=RUN, round=ROUND, owner=OWNER, ranges=ranges)
    assert len(cut) > len(narrow)
