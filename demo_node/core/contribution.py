"""One node's contribution to a round: the top-k coefficients of its momentum, block by block, per bucket."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from demo_node.core.quantize import QuantizedValues


@dataclass
class BucketPart:
    """Kept coefficients of blocks [start, start + N) of one bucket."""

    start: int
    """First block of the bucket that this part covers."""
    indices: torch.Tensor
    """(N, K) int64 coefficient indices inside each block, strictly ascending along a row."""
    values: QuantizedValues
    """(N, K) values in the same order."""

    @property
    def num_blocks(self) -> int:
        return int(self.indices.shape[0])

    @property
    def stop(self) -> int:
        return self.start + self.num_blocks

    def blocks(self, start: int, stop: int) -> "BucketPart":
        """The part of this one that covers bucket blocks [start, stop), which must lie inside it."""
        if not (self.start <= start <= stop <= self.stop):
            raise ValueError(f"blocks [{start}, {stop}) are not inside [{self.start}, {self.stop})")
        a, b = start - self.start, stop - self.start
        return BucketPart(start, self.indices[a:b], self.values.rows(a, b))


@dataclass
class Contribution:
    """What a node sends for one round, before any wire encoding."""

    parts: dict[int, BucketPart]
    """Bucket index -> the blocks of that bucket this contribution covers."""
    samples: float = 1.0
    """Samples (e.g. sequences) whose gradients went into it: its weight in a sample-weighted aggregate."""
    meta: dict = field(default_factory=dict)
    """Free-form facts for the caller (e.g. the sender); the math ignores it."""
