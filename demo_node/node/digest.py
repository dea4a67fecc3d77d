"""A digest of a model's parameters, cheap enough for every round and computed where the parameters live.

Each tensor's raw bits are read as 32-bit integers and multiplied by position-dependent odd weights in wrapping
int32 arithmetic, then summed exactly in int64: order-independent, so every device computes the same digest for the same bits, and any
change of a single element changes it. The per-tensor sums and shapes are then hashed with BLAKE2b.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import torch

_MULT = -1640531527  # the golden-ratio constant 0x9E3779B9 as a signed int32
_CHUNK = 1 << 22
_weights: dict[torch.device, torch.Tensor] = {}


def _weights_on(device: torch.device) -> torch.Tensor:
    if device not in _weights:
        _weights[device] = (torch.arange(_CHUNK, dtype=torch.int32, device=device) * _MULT) | 1
    return _weights[device]


def _words(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as int32 words (padded with zero bytes to a multiple of four)."""
    raw = t.detach().contiguous().view(-1).view(torch.uint8)
    pad = (-raw.numel()) % 4
    if pad:
        raw = torch.cat([raw, raw.new_zeros(pad)])
    return raw.view(torch.int32)


def _tensor_sum(t: torch.Tensor) -> int:
    words = _words(t)
    weights = _weights_on(words.device)
    total = torch.zeros((), dtype=torch.int64, device=words.device)
    for start in range(0, words.numel(), _CHUNK):
        part = words[start : start + _CHUNK]
        # the chunk index shifts the weights so equal chunks at different places differ
        total += (part * (weights[: part.numel()] + 2 * (start // _CHUNK))).sum(dtype=torch.int64)
    return int(total)


def digest(tensors: Iterable[torch.Tensor]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(_tensor_sum(t).to_bytes(8, "little", signed=True))
    return h.digest()
