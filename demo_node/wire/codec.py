"""Encode a :class:`Contribution` into the bytes of a ``Payload`` message, and decode them back with every check.

The only module that knows the protobuf schema. Encoding picks the cheapest index format per entry (packed
indices, Elias-Fano, a bitmask, or none when every coefficient is kept). Decoding checks version, run, sender,
weight, every entry's tensor, block range, k, index range and order, value and scale lengths and finiteness, and
that the entries cover exactly the expected blocks once; any failure raises one :class:`PayloadError` naming what
is wrong, and nothing is returned unless the whole payload passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from google.protobuf.message import DecodeError

from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.layout import Layout, TensorSpec
from demo_node.core.quantize import QuantizedValues
from demo_node.wire.bitpack import (
    bits_for,
    elias_fano_len,
    pack_elias_fano,
    pack_flags,
    pack_uints,
    packed_len,
    unpack_elias_fano,
    unpack_flags,
    unpack_uints,
)
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_payload_pb2 as pb

WIRE_VERSION = 1
MAX_SENDER_BYTES = 128
MAX_RUN_ID_CHARS = 256

_VALUE_FORMATS = {
    "fp32": pb.VALUE_FP32,
    "fp16": pb.VALUE_FP16,
    "bf16": pb.VALUE_BF16,
    "int8": pb.VALUE_INT8,
    "sign": pb.VALUE_SIGN,
}
_VALUE_MODES = {v: k for k, v in _VALUE_FORMATS.items()}
_FLOAT_WIRE = {"fp32": "<f4", "fp16": "<f2", "bf16": "<u2", "int8": "i1"}
_SCALED = {"int8", "sign"}
_MAX_INT8_SCALE = float(np.finfo(np.float32).max) / 127
"""A larger int8 scale makes code x scale overflow float32 (a finite scale is not enough)."""


@dataclass
class DecodedPayload:
    run_id: str
    round: int
    sender: bytes
    samples: float
    contribution: Contribution
    nbytes: int
    """Size of the encoded message."""


def index_format(k: int, block_size: int) -> int:
    """The cheapest way to write k positions out of block_size (ties: the simpler format)."""
    if k == block_size:
        return pb.INDEX_FULL
    return min((pb.INDEX_BITMASK, pb.INDEX_PACKED, pb.INDEX_ELIAS_FANO),
               key=lambda f: (_index_len(f, 64, k, block_size), f))


def _index_len(fmt: int, blocks: int, k: int, block_size: int) -> int:
    if fmt == pb.INDEX_FULL:
        return 0
    if fmt == pb.INDEX_PACKED:
        return packed_len(blocks * k, bits_for(block_size))
    if fmt == pb.INDEX_ELIAS_FANO:
        return elias_fano_len(blocks, k, block_size)
    return packed_len(blocks * block_size, 1)


def _value_len(mode: str, blocks: int, k: int) -> tuple[int, int]:
    """(value bytes, scale bytes) of ``blocks`` blocks of ``k`` values."""
    n = blocks * k
    values = packed_len(n, 1) if mode == "sign" else n * np.dtype(_FLOAT_WIRE[mode]).itemsize
    return values, (4 * blocks if mode in _SCALED else 0)


def _entries_of(layout: Layout, start: int, stop: int, bucket: int) -> list[tuple[TensorSpec, int, int]]:
    """(tensor, first block of the tensor, blocks) for the tensors that bucket blocks [start, stop) cross."""
    out = []
    for i in layout.buckets[bucket].tensors:
        t = layout.tensors[i]
        lo, hi = max(start, t.offset), min(stop, t.offset + t.num_blocks)
        if lo < hi:
            out.append((t, lo - t.offset, hi - lo))
    return out


# -- encoding ----------------------------------------------------------------------------------------------------
def _index_bytes(fmt: int, idx: np.ndarray, block_size: int) -> bytes:
    if fmt == pb.INDEX_FULL:
        return b""
    if fmt == pb.INDEX_PACKED:
        return pack_uints(idx.reshape(-1), bits_for(block_size))
    if fmt == pb.INDEX_ELIAS_FANO:
        return pack_elias_fano(idx, block_size)
    mask = np.zeros((idx.shape[0], block_size), dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return pack_flags(mask)


def _value_bytes(values: QuantizedValues, rows: slice) -> tuple[bytes, bytes]:
    codes = values.codes[rows]
    if values.mode == "bf16":
        arr = codes.view(torch.int16).numpy().astype("<u2", copy=False)
    elif values.mode == "sign":
        return pack_flags(codes.numpy()), values.scales[rows].numpy().astype("<f4").tobytes()
    else:
        arr = codes.numpy().astype(_FLOAT_WIRE[values.mode], copy=False)
    scales = values.scales[rows].numpy().astype("<f4").tobytes() if values.mode in _SCALED else b""
    return arr.tobytes(), scales


def encode(contribution: Contribution, layout: Layout, *, run_id: str, round: int, sender: bytes) -> bytes:
    """The wire bytes of a contribution (its samples become the payload's weight)."""
    msg = pb.Payload(version=WIRE_VERSION, run_id=run_id, round=round, sender=sender, samples=contribution.samples)
    for b, part in sorted(contribution.parts.items()):
        spec = layout.buckets[b]
        idx_all = part.indices.cpu().numpy()
        values = part.values.to("cpu")
        k = idx_all.shape[1]
        fmt = index_format(k, spec.block_size)
        for t, first, count in _entries_of(layout, part.start, part.stop, b):
            rows = slice(t.offset + first - part.start, t.offset + first - part.start + count)
            vbytes, sbytes = _value_bytes(values, rows)
            msg.entries.append(
                pb.TensorEntry(
                    tensor=t.index,
                    first_block=first,
                    num_blocks=count,
                    k=k,
                    index_format=fmt,
                    indices=_index_bytes(fmt, idx_all[rows], spec.block_size),
                    value_format=_VALUE_FORMATS[values.mode],
                    values=vbytes,
                    scales=sbytes,
                )
            )
    return msg.SerializeToString()


def encoded_size(layout: Layout, value_mode: str, *, run_id: str = "", sender_bytes: int = 38) -> int:
    """Exact size of a full payload of ``layout`` at its top-k in ``value_mode``, without building one."""
    msg = pb.Payload(version=WIRE_VERSION, run_id=run_id, round=1, sender=bytes(sender_bytes), samples=1.0)
    for spec in layout.buckets:
        fmt = index_format(spec.k, spec.block_size)
        for t, first, count in _entries_of(layout, 0, spec.num_blocks, spec.index):
            vlen, slen = _value_len(value_mode, count, spec.k)
            msg.entries.append(
                pb.TensorEntry(
                    tensor=t.index,
                    first_block=first,
                    num_blocks=count,
                    k=spec.k,
                    index_format=fmt,
                    indices=bytes(_index_len(fmt, count, spec.k, spec.block_size)),
                    value_format=_VALUE_FORMATS[value_mode],
                    values=bytes(vlen),
                    scales=bytes(slen),
                )
            )
    return msg.ByteSize()


def max_payload_bytes(layout: Layout) -> int:
    """A bound no valid full payload of this layout exceeds: the largest formats plus generous framing."""
    total = 4096 + MAX_SENDER_BYTES + MAX_RUN_ID_CHARS * 4
    for spec in layout.buckets:
        per_block = spec.k * 4 + 4 + max(_index_len(f, 1, spec.k, spec.block_size) + 1 for f in (1, 2, 3, 4))
        total += spec.num_blocks * per_block + 64 * len(spec.tensors)
    return total


# -- decoding ----------------------------------------------------------------------------------------------------
def _decode_indices(e, t: TensorSpec, block_size: int) -> np.ndarray:
    """(num_blocks, k) indices of an entry, checked for length, range and strict order."""
    n, k = e.num_blocks, e.k
    if e.index_format == pb.INDEX_FULL:
        if k != block_size:
            raise PayloadError("index_format", f"tensor {t.index}: INDEX_FULL with k={k} of {block_size}")
        if e.indices:
            raise PayloadError("index_length", f"tensor {t.index}: INDEX_FULL carries index bytes")
        return np.broadcast_to(np.arange(block_size, dtype=np.int64), (n, k)).copy()
    if e.index_format in (pb.INDEX_PACKED, pb.INDEX_ELIAS_FANO):
        packed = e.index_format == pb.INDEX_PACKED
        bits = bits_for(block_size)
        length = packed_len(n * k, bits) if packed else elias_fano_len(n, k, block_size)
        if len(e.indices) != length:
            raise PayloadError("index_length", f"tensor {t.index}: {len(e.indices)} index bytes")
        idx = unpack_uints(e.indices, bits, n * k).reshape(n, k) if packed else (
            unpack_elias_fano(e.indices, n, k, block_size))
        if idx is None:
            raise PayloadError("index_count", f"tensor {t.index}: an Elias-Fano block without exactly k={k} bits")
        if (idx >= block_size).any():
            raise PayloadError("index_range", f"tensor {t.index}: index >= block size {block_size}")
        if k > 1 and (np.diff(idx, axis=1) <= 0).any():
            raise PayloadError("index_order", f"tensor {t.index}: indices not strictly ascending in a block")
        return idx
    if e.index_format == pb.INDEX_BITMASK:
        if len(e.indices) != packed_len(n * block_size, 1):
            raise PayloadError("index_length", f"tensor {t.index}: {len(e.indices)} bitmask bytes")
        mask = unpack_flags(e.indices, n * block_size).reshape(n, block_size)
        if (mask.sum(axis=1) != k).any():
            raise PayloadError("index_count", f"tensor {t.index}: a bitmask block without exactly k={k} bits")
        return np.nonzero(mask)[1].reshape(n, k).astype(np.int64)
    raise PayloadError("index_format", f"tensor {t.index}: unknown index format {e.index_format}")


def _decode_values(e, t: TensorSpec, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    n, k = e.num_blocks, e.k
    vlen, slen = _value_len(mode, n, k)
    if len(e.values) != vlen or len(e.scales) != slen:
        raise PayloadError("value_length", f"tensor {t.index}: {len(e.values)} value / {len(e.scales)} scale bytes")
    scales = None
    if mode in _SCALED:
        scales = np.frombuffer(e.scales, dtype="<f4").astype(np.float32)
        if not np.isfinite(scales).all() or (scales < 0).any():
            raise PayloadError("value_not_finite", f"tensor {t.index}: a scale that is not finite and >= 0")
        if mode == "int8" and (scales > _MAX_INT8_SCALE).any():
            raise PayloadError("value_not_finite", f"tensor {t.index}: a scale whose values (code x scale) overflow")
    if mode == "sign":
        return unpack_flags(e.values, n * k).reshape(n, k), scales
    codes = np.frombuffer(e.values, dtype=_FLOAT_WIRE[mode]).reshape(n, k)
    if mode in ("fp32", "fp16") and not np.isfinite(codes).all():
        raise PayloadError("value_not_finite", f"tensor {t.index}: a value that is not finite")
    if mode == "bf16" and ((codes & 0x7F80) == 0x7F80).any():  # all-ones exponent: inf or NaN
        raise PayloadError("value_not_finite", f"tensor {t.index}: a value that is not finite")
    return codes, scales


def _codes_tensor(mode: str, codes: np.ndarray) -> torch.Tensor:
    if mode == "bf16":
        return torch.from_numpy(codes.astype(np.uint16).view(np.int16)).view(torch.bfloat16)
    if mode == "sign":
        return torch.from_numpy(codes.copy())
    return torch.from_numpy(codes.astype(codes.dtype.newbyteorder("="), copy=True))


def decode(
    data: bytes,
    layout: Layout,
    *,
    run_id: str | None = None,
    round: int | None = None,
    expect: dict[int, tuple[int, int]] | None = None,
    max_bytes: int | None = None,
) -> DecodedPayload:
    """Check and decode payload bytes. ``expect`` maps bucket -> (start, stop) blocks the entries must cover
    exactly (default: every block of every bucket); ``run_id`` / ``round``, when given, must match."""
    limit = max_payload_bytes(layout) if max_bytes is None else max_bytes
    if len(data) > limit:
        raise PayloadError("too_large", f"{len(data)} bytes > {limit}")
    msg = pb.Payload()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise PayloadError("malformed", f"not a Payload message ({exc})") from None
    if msg.version != WIRE_VERSION:
        raise PayloadError("version", f"wire version {msg.version}, this node speaks {WIRE_VERSION}")
    if len(msg.run_id) > MAX_RUN_ID_CHARS or (run_id is not None and msg.run_id != run_id):
        raise PayloadError("run_id", f"payload of run {msg.run_id[:64]!r}, expected {run_id!r}")
    if round is not None and msg.round != round:
        raise PayloadError("round", f"payload of round {msg.round}, expected {round}")
    if not 0 < len(msg.sender) <= MAX_SENDER_BYTES:
        raise PayloadError("sender", f"sender id of {len(msg.sender)} bytes")
    if not (math.isfinite(msg.samples) and msg.samples > 0):
        raise PayloadError("samples", f"sample weight {msg.samples}")
    if expect is None:
        expect = {b.index: (0, b.num_blocks) for b in layout.buckets}

    formats = {e.value_format for e in msg.entries}
    if len(formats) > 1:
        raise PayloadError("value_format", f"several value formats in one payload: {sorted(formats)}")
    mode = _VALUE_MODES.get(next(iter(formats))) if formats else None
    if formats and mode is None:
        raise PayloadError("value_format", f"unknown value format {next(iter(formats))}")

    # bucket -> list of (first bucket block, indices, codes, scales)
    pieces: dict[int, list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]] = {}
    for e in msg.entries:
        if e.tensor >= len(layout.tensors):
            raise PayloadError("tensor", f"tensor {e.tensor} of a run with {len(layout.tensors)}")
        t = layout.tensors[e.tensor]
        spec = layout.buckets[t.bucket]
        if e.num_blocks < 1 or e.first_block + e.num_blocks > t.num_blocks:
            raise PayloadError("block_range", f"tensor {t.index}: blocks {e.first_block}+{e.num_blocks} of {t.num_blocks}")
        if not 1 <= e.k <= spec.k:
            raise PayloadError("k", f"tensor {t.index}: k={e.k}, allowed 1..{spec.k}")
        idx = _decode_indices(e, t, spec.block_size)
        codes, scales = _decode_values(e, t, mode)
        pieces.setdefault(t.bucket, []).append((t.offset + e.first_block, idx, codes, scales))

    parts = {}
    if pieces.keys() != expect.keys():
        raise PayloadError("coverage", f"entries cover buckets {sorted(pieces)}, expected {sorted(expect)}")
    for b, items in pieces.items():
        items.sort(key=lambda it: it[0])
        start, stop = expect[b]
        pos = start
        for first, idx, _, _ in items:
            if first != pos:
                raise PayloadError("coverage", f"bucket {b}: block {first} where block {pos} was expected")
            pos += idx.shape[0]
        if pos != stop:
            raise PayloadError("coverage", f"bucket {b}: entries end at block {pos}, expected {stop}")
        ks = {idx.shape[1] for _, idx, _, _ in items}
        if len(ks) > 1:
            raise PayloadError("k", f"bucket {b}: entries with different k {sorted(ks)}")
        idx = torch.from_numpy(np.concatenate([it[1] for it in items]))
        codes = _codes_tensor(mode, np.concatenate([it[2] for it in items]))
        scales = torch.from_numpy(np.concatenate([it[3] for it in items])) if mode in _SCALED else None
        parts[b] = BucketPart(start, idx, QuantizedValues(mode, codes, scales))
    sender = bytes(msg.sender)
    contribution = Contribution(parts, samples=float(msg.samples), meta={"sender": sender})
    return DecodedPayload(msg.run_id, int(msg.round), sender, float(msg.samples), contribution, len(data))
