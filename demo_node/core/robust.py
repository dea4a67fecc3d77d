"""Robust aggregation: how much a contribution may weigh and how large it may be before it is aggregated.

The rule, applied by every node to the same contributions (so it gives the same update everywhere):

1. a contribution's sample weight is capped at ``max_sample_weight`` (a run option) and at ``weight_factor`` (4)
   times the round's lower median weight;
2. its values are scaled down to the round's lower median L2 norm where they are larger (Templar clips each peer to
   the median norm the same way);
3. a contribution whose norm is not finite, or whose bounded values would not be, is rejected.

The lower median is the smaller middle value: with two contributions it is the smaller one, so one peer of two
cannot outweigh the other (nothing can help a run where half the peers attack). Honest peers of one run send
similar norms and weights, so the rule rarely changes an honest round: a measurement of what it costs in convergence
is in the README. Norms are computed in float64, so no finite input overflows here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from demo_node.core.contribution import Contribution

WEIGHT_FACTOR = 4.0
"""A contribution weighs at most this many times the round's lower median weight."""
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@dataclass
class Screened:
    """What robust aggregation keeps of a round's contributions (positions in the list it was given)."""

    kept: list[int]
    weights: list[float]
    """Bounded sample weight of each kept contribution."""
    value_scales: list[float]
    """Factor (at most 1) its values are multiplied by, to bring its norm down to the median."""
    rejected: dict[int, str] = field(default_factory=dict)
    """Position -> why it was rejected."""


def lower_median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def norm(c: Contribution) -> float:
    """L2 norm of a contribution's values (float64; inf if they are too large for that)."""
    total = 0.0
    for part in c.parts.values():
        total += float(part.values.dequantize(torch.float64).square().sum())
    return math.sqrt(total) if math.isfinite(total) else math.inf


def screen(contributions: Sequence[Contribution], max_sample_weight: float) -> Screened:
    """Bound the weights and norms of a round's contributions; reject the ones that cannot be bounded."""
    norms = [norm(c) for c in contributions]
    rejected = {i: "unbounded" for i, n in enumerate(norms) if not math.isfinite(n)}
    candidates = [i for i in range(len(contributions)) if i not in rejected]
    if not candidates:
        return Screened([], [], [], rejected)
    median_norm = lower_median([norms[i] for i in candidates])
    median_weight = lower_median([contributions[i].samples for i in candidates])
    cap = min(max_sample_weight, WEIGHT_FACTOR * median_weight)
    kept, weights, scales = [], [], []
    # the largest value a bounded contribution adds is its clipped norm times its weight: kept under float32's range
    # with room for the sum over every contribution
    room = FLOAT32_MAX / (2 * len(contributions))
    for i in candidates:
        scale = 1.0 if norms[i] <= median_norm or norms[i] == 0 else median_norm / norms[i]
        weight = min(float(contributions[i].samples), cap)
        if not norms[i] * scale * max(weight, 1.0) <= room:
            rejected[i] = "unbounded"
            continue
        kept.append(i)
        weights.append(weight)
        scales.append(scale)
    return Screened(kept, weights, scales, rejected)
