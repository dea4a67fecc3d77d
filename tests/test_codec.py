"""The wire codec: round trips, sizes, and rejection of malformed and hostile payloads."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo_node.core import DeMo
from demo_node.core.quantize import quantize
from demo_node.wire.bitpack import (elias_fano_len, pack_elias_fano, pack_flags, pack_uints, unpack_elias_fano,
                                    unpack_flags, unpack_uints)
from demo_node.wire.codec import decode, encode, encoded_size, index_format
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_payload_pb2 as pb

SENDER = b"\x12\x20" + bytes(range(32))
SHAPES = [(64, 128), (128,), (3, 5), (20,), (4, 2, 8), (48, 40)]  # (48, 40): 24 x 20 blocks, 9-bit indices


def prepared(values="int8", topk=8, chunk=32, shapes=SHAPES, seed=0):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    opt = DeMo(params, lr=0.1, topk=topk, chunk=chunk, values=values)
    for p in params:
        p.grad = torch.randn_like(p)
    return opt, opt.prepare(samples=4)


def assert_same(a, b):
    assert a.parts.keys() == b.parts.keys()
    for k in a.parts:
        pa, pb_ = a.parts[k], b.parts[k]
        assert pa.start == pb_.start
        assert torch.equal(pa.indices, pb_.indices)
        assert pa.values.mode == pb_.values.mode
        assert torch.equal(pa.values.dequantize(), pb_.values.dequantize())


@pytest.mark.parametrize("values", ["fp32", "fp16", "bf16", "int8", "sign"])
def test_round_trip_is_exact_on_what_was_quantised(values):
    opt, c = prepared(values)
    data = encode(c, opt.layout, run_id="run-a", round=7, sender=SENDER)
    d = decode(data, opt.layout, run_id="run-a", round=7)
    assert (d.run_id, d.round, d.sender, d.samples, d.nbytes) == ("run-a", 7, SENDER, 4.0, len(data))
    assert_same(c, d.contribution)
    assert len(data) == encoded_size(opt.layout, values, run_id="run-a", sender_bytes=len(SENDER))


@pytest.mark.parametrize(
    "values,bound",
    [("fp32", lambda v, s: 0 * v), ("fp16", lambda v, s: v.abs() * 2**-11 + 2**-25), ("bf16", lambda v, s: v.abs() * 2**-8),
     ("int8", lambda v, s: s.unsqueeze(1) / 2 + 1e-12)],
)
def test_values_within_their_dtype_error(values, bound):
    raw = torch.randn(50, 16) * 1e-3
    q = quantize(raw, values)
    scales = q.scales if q.scales is not None else torch.zeros(50)
    assert ((q.dequantize() - raw).abs() <= bound(raw, scales) * 1.0001).all()


def test_sign_values_keep_sign_and_block_mean_magnitude():
    raw = torch.randn(10, 8)
    deq = quantize(raw, "sign").dequantize()
    assert torch.equal(torch.sign(deq), torch.sign(raw))
    torch.testing.assert_close(deq.abs().mean(1), raw.abs().mean(1))


def test_index_format_is_the_cheapest():
    assert index_format(32, 4096) == pb.INDEX_ELIAS_FANO  # 32 x (7 + 2) bits < 32 x 12 bits < 4096 bits
    assert index_format(1, 4096) == pb.INDEX_PACKED  # 12 bits < 12 + 2 bits
    assert index_format(32, 64) == pb.INDEX_BITMASK  # 32 * 6 bits > 64 bits: a vector chunk
    assert index_format(5, 5) == pb.INDEX_FULL
    assert index_format(1, 1) == pb.INDEX_FULL


def test_vectors_cost_less_than_dense_fp16():
    """Biases and norms: the reference pays 6 bytes per element; a bitmask + int8 pays under one."""
    opt, c = prepared("int8", topk=32, chunk=64, shapes=[(384,)] * 10)
    size = len(encode(c, opt.layout, run_id="r", round=1, sender=SENDER))
    assert size < 3840 * 1.0  # < 1 byte per element, 10 x 384 elements
    assert size < 3840 * 2  # cheaper than dense fp16


@given(st.integers(1, 16), st.lists(st.integers(0, 2**16 - 1), max_size=200))
def test_bit_packing_round_trip(bits, raw):
    values = np.array([v % (1 << bits) for v in raw], dtype=np.int64)
    data = pack_uints(values, bits)
    assert len(data) == (len(values) * bits + 7) // 8
    assert np.array_equal(unpack_uints(data, bits, len(values)), values)
    flags = values % 2 == 1
    assert np.array_equal(unpack_flags(pack_flags(flags), len(flags)), flags)


@given(st.integers(1, 4096), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_elias_fano_round_trip_and_size(size, blocks, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, size + 1))
    idx = np.sort(np.stack([rng.choice(size, k, replace=False) for _ in range(blocks)]), axis=1)
    data = pack_elias_fano(idx, size)
    assert len(data) == elias_fano_len(blocks, k, size)
    assert np.array_equal(unpack_elias_fano(data, blocks, k, size), idx)


def test_elias_fano_costs_about_two_bits_over_log_size_over_k():
    assert elias_fano_len(1000, 32, 4096) * 8 / 32000 <= 9.0  # 12 bits packed, 8.3 the entropy bound


def test_twelve_bit_indices_of_a_4096_block():
    idx = np.array([0, 4095, 1234, 2048])
    data = pack_uints(idx, 12)
    assert len(data) == 6
    assert np.array_equal(unpack_uints(data, 12, 4), idx)


def test_a_shard_of_blocks_round_trips_with_expected_coverage():
    opt, c = prepared("fp16")
    spec = opt.layout.buckets[0]
    start, stop = 1, spec.num_blocks - 1
    shard = type(c)({0: c.parts[0].blocks(start, stop)}, samples=c.samples)
    data = encode(shard, opt.layout, run_id="r", round=1, sender=SENDER)
    d = decode(data, opt.layout, expect={0: (start, stop)})
    assert_same(shard, d.contribution)
    with pytest.raises(PayloadError) as err:
        decode(data, opt.layout)  # the full payload was expected
    assert err.value.reason == "coverage"


# -- hostile payloads --------------------------------------------------------------------------------------------
def valid_message(values="int8"):
    opt, c = prepared(values)
    msg = pb.Payload()
    msg.ParseFromString(encode(c, opt.layout, run_id="r", round=1, sender=SENDER))
    return opt.layout, msg


def reject(layout, msg, reason, **kw):
    with pytest.raises(PayloadError) as err:
        decode(msg.SerializeToString(), layout, **kw)
    assert err.value.reason == reason, str(err.value)


def packed_entry(msg):
    """An entry with index bytes in one of the two formats of k indices (Elias-Fano where that is cheaper)."""
    return next(e for e in msg.entries if e.index_format in (pb.INDEX_PACKED, pb.INDEX_ELIAS_FANO))


def test_rejects_wrong_version_run_round_sender_samples():
    layout, msg = valid_message()
    reject(layout, msg, "run_id", run_id="other")
    reject(layout, msg, "round", round=2)
    for field, value, reason in [
        ("version", 2, "version"), ("sender", b"", "sender"), ("sender", bytes(500), "sender"),
        ("samples", 0.0, "samples"), ("samples", math.nan, "samples"), ("samples", math.inf, "samples"),
    ]:
        bad = copy_of(msg)
        setattr(bad, field, value)
        reject(layout, bad, reason)


def copy_of(msg):
    bad = pb.Payload()
    bad.CopyFrom(msg)
    return bad


@pytest.mark.parametrize("fmt", [pb.INDEX_PACKED, pb.INDEX_ELIAS_FANO])
def test_rejects_index_out_of_range_repeated_or_unsorted(fmt):
    layout, msg = valid_message()
    t = next(t for t in layout.tensors if t.shape == (48, 40))
    block_size, bits = t.h * t.w, 9  # 480 coefficients: 9 bits can name 480..511 too

    def entry(m):
        return next(x for x in m.entries if x.tensor == t.index)

    def write(e, idx):  # any format of k indices is accepted, the cheapest or not
        e.index_format = fmt
        e.indices = pack_uints(idx.reshape(-1), bits) if fmt == pb.INDEX_PACKED else pack_elias_fano(idx, block_size)

    e = entry(msg)
    assert e.index_format == pb.INDEX_ELIAS_FANO
    idx = unpack_elias_fano(e.indices, e.num_blocks, e.k, block_size)
    good = copy_of(msg)
    write(entry(good), idx)
    decode(good.SerializeToString(), layout)
    cases = [
        ("index_range", lambda a: a.__setitem__((0, -1), block_size + 5)),  # still ascending
        ("index_order", lambda a: a.__setitem__((0, 1), a[0, 0])),  # a repeat
        ("index_order", lambda a: a[0].__setitem__(slice(0, 2), [3, 2])),  # descending (same high bits)
    ]
    if fmt == pb.INDEX_PACKED:
        cases.append(("index_order", lambda a: a.__setitem__(0, a[0, ::-1].copy())))
    for reason, mutate in cases:
        bad_idx = idx.copy()
        mutate(bad_idx)
        bad = copy_of(msg)
        write(entry(bad), bad_idx)
        reject(layout, bad, reason)
    if fmt == pb.INDEX_ELIAS_FANO:  # a high part without exactly k bits set
        bad = copy_of(msg)
        data = bytearray(entry(bad).indices)
        data[(e.num_blocks * e.k * 5 + 7) // 8] ^= 1  # the first bit after the 5-bit low parts
        entry(bad).indices = bytes(data)
        reject(layout, bad, "index_count")


def test_rejects_bad_counts_lengths_formats():
    layout, msg = valid_message()
    cases = [
        (lambda e: setattr(e, "k", e.k + 1), "k"),
        (lambda e: setattr(e, "k", 0), "k"),
        (lambda e: setattr(e, "indices", e.indices[:-1]), "index_length"),
        (lambda e: setattr(e, "values", e.values + b"\0"), "value_length"),
        (lambda e: setattr(e, "scales", e.scales[:-4]), "value_length"),
        (lambda e: setattr(e, "index_format", 9), "index_format"),
        (lambda e: setattr(e, "index_format", pb.INDEX_FULL), "index_format"),
        (lambda e: setattr(e, "tensor", 99), "tensor"),
        (lambda e: setattr(e, "first_block", e.first_block + 1), "block_range"),
        (lambda e: setattr(e, "num_blocks", 0), "block_range"),
    ]
    for mutate, reason in cases:
        bad = copy_of(msg)
        mutate(packed_entry(bad))
        reject(layout, bad, reason)


def test_rejects_non_finite_values_and_scales():
    for values, field, poison in [
        ("fp32", "values", np.array([np.nan], "<f4").tobytes()),
        ("fp16", "values", np.array([np.inf], "<f2").tobytes()),
        ("bf16", "values", np.array([0x7FC0], "<u2").tobytes()),
        ("int8", "scales", np.array([np.inf], "<f4").tobytes()),
        ("sign", "scales", np.array([-1.0], "<f4").tobytes()),
    ]:
        layout, msg = valid_message(values)
        e = msg.entries[0]
        raw = getattr(e, field)
        setattr(e, field, poison + raw[len(poison):])
        reject(layout, msg, "value_not_finite")


def test_rejects_mixed_value_formats_overlap_and_gaps():
    layout, msg = valid_message("fp16")
    bad = copy_of(msg)
    bad.entries[0].value_format = pb.VALUE_BF16
    reject(layout, bad, "value_format")
    bad = copy_of(msg)
    bad.entries.append(bad.entries[0])  # the same blocks twice
    reject(layout, bad, "coverage")
    bad = copy_of(msg)
    del bad.entries[1]
    reject(layout, bad, "coverage")


def test_rejects_oversized_and_garbage():
    layout, msg = valid_message()
    with pytest.raises(PayloadError) as err:
        decode(b"\x00" * 10_000_000, layout)
    assert err.value.reason == "too_large"
    with pytest.raises(PayloadError) as err:
        decode(b"\xff\xff\xff", layout)
    assert err.value.reason == "malformed"


def check_valid(d, layout):
    """What a decoder may return: every invariant the aggregation relies on holds."""
    for b, part in d.contribution.parts.items():
        spec = layout.buckets[b]
        assert part.indices.shape[0] == spec.num_blocks
        assert (part.indices >= 0).all() and (part.indices < spec.block_size).all()
        assert part.indices.shape[1] == 1 or (part.indices.diff(dim=1) > 0).all()
        assert torch.isfinite(part.values.dequantize()).all()
    assert d.samples > 0 and math.isfinite(d.samples)


_LAYOUT, _MSG = valid_message()
_VALID = _MSG.SerializeToString()


def _depths(ci: int) -> list:
    """``ci`` cases in the default run, 10,000 under ``pytest -m fuzz``."""
    return [pytest.param(ci, id="ci"), pytest.param(10_000, id="deep", marks=pytest.mark.fuzz)]


def _rejected_or_valid(data: bytes) -> None:
    try:
        d = decode(data, _LAYOUT)
    except PayloadError:
        return
    check_valid(d, _LAYOUT)


@pytest.mark.parametrize("examples", _depths(300))
def test_random_bytes_never_crash_the_decoder(examples):
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=4096))
    def check(data):
        _rejected_or_valid(data)

    check()


@pytest.mark.parametrize("examples", _depths(300))
def test_mutated_payloads_are_rejected_or_valid(examples):
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
           st.integers(0, len(_VALID)))
    def check(flips, cut):
        data = bytearray(_VALID)
        for pos, byte in flips:
            data[pos] = byte
        _rejected_or_valid(bytes(data[: max(cut, len(data) - 64)]) if cut % 3 == 0 else bytes(data))

    check()


@pytest.mark.parametrize("examples", _depths(200))
def test_structured_hostile_entries_are_rejected_or_valid(examples):
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        msg = copy_of(_MSG)
        e = msg.entries[data.draw(st.integers(0, len(msg.entries) - 1))]
        field = data.draw(st.sampled_from(["tensor", "first_block", "num_blocks", "k", "index_format",
                                           "value_format"]))
        top = 2**31 - 1 if field.endswith("format") else 2**32 - 1  # enums are int32 on the wire
        setattr(e, field, data.draw(st.integers(0, top)))
        if data.draw(st.booleans()):
            e.indices = data.draw(st.binary(max_size=256))
        if data.draw(st.booleans()):
            e.values = data.draw(st.binary(max_size=256))
        _rejected_or_valid(msg.SerializeToString())

    check()
