"""Aggregation rules: how the contributions of a round's peers become one set of DCT coefficients.

``selected`` (the reference's rule): each coefficient is the mean of the values of the peers that selected it,
weighted by the samples behind each contribution; with equal weights it is exactly the reference's
``scatter_reduce(mean, include_self=False)``. ``all``: the sample-weighted mean over all the round's peers, a peer
that did not select a coefficient counting as zero there.

The result keeps every peer's entries side by side (a coefficient selected by several peers appears several times,
already divided by its normaliser), so the inverse transform, being linear, sums them. Every peer must pass the
contributions in the same order (the node sorts them by sender) so that every peer sums in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from demo_node.core.config import AGGREGATIONS
from demo_node.core.contribution import Contribution


@dataclass
class AggregatePart:
    """Aggregated coefficients of bucket blocks [start, start + N)."""

    start: int
    indices: torch.Tensor
    """(N, K_total) int64 coefficient indices inside each block; repeats add up."""
    coeff: torch.Tensor
    """(N, K_total) float32 normalised values."""

    @property
    def stop(self) -> int:
        return self.start + int(self.indices.shape[0])


@dataclass
class Aggregate:
    parts: dict[int, AggregatePart]
    """Bucket index -> aggregated coefficients of the blocks covered."""
    peers: int
    """How many contributions went into it."""
    samples: float
    """Their total sample weight."""


def aggregate(contributions: Sequence[Contribution], rule: str, block_sizes: dict[int, int],
              weights: Sequence[float] | None = None, value_scales: Sequence[float] | None = None) -> Aggregate:
    """Combine contributions that cover the same blocks, by ``rule`` (see the module docstring).

    ``block_sizes`` maps each bucket to its coefficients per block (needed to count who selected what). ``weights``
    replace the contributions' sample counts and ``value_scales`` multiply their values (robust aggregation's
    bounds, see :mod:`demo_node.core.robust`).
    """
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rule!r}; choose one of {', '.join(AGGREGATIONS)}")
    if not contributions:
        raise ValueError("nothing to aggregate")
    weights = [float(c.samples) for c in contributions] if weights is None else [float(w) for w in weights]
    scales = [1.0] * len(contributions) if value_scales is None else [float(s) for s in value_scales]
    if any(not (w > 0 and w < float("inf")) for w in weights):
        raise ValueError(f"sample weights must be positive and finite, got {weights}")
    buckets = contributions[0].parts.keys()
    for c in contributions[1:]:
        if c.parts.keys() != buckets:
            raise ValueError("contributions cover different buckets")
    total = sum(weights)
    parts = {}
    for b in buckets:
        pieces = [c.parts[b] for c in contributions]
        start, stop = pieces[0].start, pieces[0].stop
        if any(p.start != start or p.stop != stop for p in pieces):
            raise ValueError(f"contributions cover different blocks of bucket {b}")
        if len(pieces) == 1:
            # one peer: both rules give its own values (the weight cancels); skip the arithmetic to stay exact
            parts[b] = AggregatePart(start, pieces[0].indices, _scaled(pieces[0], scales[0], 1.0))
            continue
        idx = torch.cat([p.indices for p in pieces], dim=1)
        weighted = torch.cat([_scaled(p, s, w) for p, s, w in zip(pieces, scales, weights)], dim=1)
        if rule == "all":
            coeff = weighted / total
        else:
            per_entry = torch.cat(
                [torch.full_like(p.indices, 0, dtype=torch.float32).fill_(w) for p, w in zip(pieces, weights)], dim=1
            )
            selected = torch.zeros(idx.shape[0], block_sizes[b], dtype=torch.float32, device=idx.device)
            selected.scatter_add_(1, idx, per_entry)  # weight of the peers that selected each coefficient
            coeff = weighted / selected.gather(1, idx)
        parts[b] = AggregatePart(start, idx, coeff)
    return Aggregate(parts, len(contributions), total)


def _scaled(part, scale: float, weight: float) -> torch.Tensor:
    """A part's values times its weight (and its robust scale, computed in float64 so that a hostile scale that
    the bound brings back into range never overflows on the way)."""
    if scale == 1.0:
        values = part.values.dequantize()
        return values if weight == 1.0 else values * weight
    return (part.values.dequantize(torch.float64) * (scale * weight)).to(torch.float32)
