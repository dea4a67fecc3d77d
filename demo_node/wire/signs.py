"""Update signs of a shard as bits: one per parameter (set = negative) and one per block (set = not all zero)."""

from __future__ import annotations

import numpy as np
import torch

from demo_node.core.layout import Layout
from demo_node.core.update import SignUpdate
from demo_node.wire.bitpack import pack_flags, packed_len, unpack_flags
from demo_node.wire.errors import PayloadError


def pack_signs(signs: SignUpdate, ranges: dict[int, tuple[int, int]]) -> tuple[bytes, bytes]:
    """(sign bits, nonzero-block bits) of the buckets in ``ranges``, in bucket order."""
    negative, nonzero = [], []
    for b in sorted(ranges):
        start, s = signs[b]
        assert (start, start + s.shape[0]) == ranges[b], "signs do not cover the range"
        flat = s.reshape(s.shape[0], -1).cpu()
        negative.append((flat < 0).numpy().reshape(-1))
        nonzero.append((flat != 0).any(dim=1).numpy())
    if not negative:
        return b"", b""
    return pack_flags(np.concatenate(negative)), pack_flags(np.concatenate(nonzero))


def unpack_signs(sign_bits: bytes, nonzero_bits: bytes, layout: Layout, ranges: dict[int, tuple[int, int]]) -> SignUpdate:
    """Signs in {-1, 0, 1} (float32) for the buckets in ``ranges``; raises PayloadError on wrong lengths."""
    n_values = sum((stop - start) * layout.buckets[b].block_size for b, (start, stop) in ranges.items())
    n_blocks = sum(stop - start for start, stop in ranges.values())
    if len(sign_bits) != packed_len(n_values, 1) or len(nonzero_bits) != packed_len(n_blocks, 1):
        raise PayloadError("value_length", f"{len(sign_bits)} sign bytes / {len(nonzero_bits)} block bytes")
    negative = unpack_flags(sign_bits, n_values)
    nonzero = unpack_flags(nonzero_bits, n_blocks)
    out: SignUpdate = {}
    pos_v = pos_b = 0
    for b in sorted(ranges):
        start, stop = ranges[b]
        spec = layout.buckets[b]
        n = stop - start
        neg = negative[pos_v : pos_v + n * spec.block_size].reshape(n, spec.block_size)
        live = nonzero[pos_b : pos_b + n]
        s = np.where(neg, -1.0, 1.0).astype(np.float32) * live[:, None]
        out[b] = (start, torch.from_numpy(s).view(n, spec.h, spec.w))
        pos_v += n * spec.block_size
        pos_b += n
    return out
