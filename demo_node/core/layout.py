"""How a model's tensors are cut into DCT blocks and grouped into buckets; shared by the optimizer and the codec.

Rank rule: every tensor is seen as a matrix (rows, cols). A scalar is (1, 1), a vector of n elements is (1, n),
a tensor of rank >= 3 is (shape[0], product of the other dims), e.g. a conv kernel (out, in, kh, kw) becomes
(out, in*kh*kw). Each dimension is split into chunks by :func:`chunk_size` (the reference's rule), so a matrix
becomes a grid of (h, w) blocks and a vector becomes 1 x w blocks (a 1-D DCT per chunk, as in the reference).
Blocks are numbered row-major over the grid. Tensors of one parameter group with the same block shape form a
bucket, whose blocks are the concatenation of its tensors' blocks in parameter order; the math runs per bucket.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

from demo_node.core.dct import chunk_size


@dataclass(frozen=True)
class TensorSpec:
    index: int
    """Position of the tensor in the optimizer's parameter order (trainable, non-empty tensors only)."""
    shape: tuple[int, ...]
    """The parameter's own shape."""
    rows: int
    """Rows of the matrix view (rank rule above)."""
    cols: int
    """Columns of the matrix view."""
    h: int
    """Block rows: chunk of ``rows``."""
    w: int
    """Block columns: chunk of ``cols``."""
    bucket: int
    """Index of the bucket that holds this tensor's blocks."""
    offset: int
    """Index of this tensor's first block inside its bucket."""

    @property
    def grid(self) -> tuple[int, int]:
        """Blocks along rows and along columns."""
        return self.rows // self.h, self.cols // self.w

    @property
    def num_blocks(self) -> int:
        return (self.rows // self.h) * (self.cols // self.w)

    @property
    def numel(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class BucketSpec:
    index: int
    group: int
    """Parameter group whose hyperparameters (lr, weight decay) the bucket's tensors share."""
    h: int
    w: int
    k: int
    """Coefficients kept per block: top-k clamped to the block size."""
    num_blocks: int
    tensors: tuple[int, ...]
    """Indices of the tensors in this bucket, in parameter order."""

    @property
    def block_size(self) -> int:
        return self.h * self.w


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The (rows, cols) view of a tensor under the rank rule."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, int(shape[0])
    return int(shape[0]), int(math.prod(shape[1:]))


@dataclass(frozen=True)
class Layout:
    tensors: tuple[TensorSpec, ...]
    buckets: tuple[BucketSpec, ...]
    chunk: int
    topk: int
    cut_topk: int = 0
    """Coefficients per block of an aggregate's cut in sparse exchange (0: topk; see :meth:`cut`)."""

    @classmethod
    def build(cls, shapes: Sequence[Sequence[int]], groups: Sequence[int], chunk: int, topk: int,
              cut_topk: int = 0) -> "Layout":
        """Layout for tensors of the given shapes, each tagged with its parameter group (same order)."""
        if chunk < 1 or topk < 1:
            raise ValueError(f"chunk and topk must be >= 1, got chunk={chunk}, topk={topk}")
        if len(shapes) != len(groups):
            raise ValueError("one group per shape is needed")
        geometry = []
        keys: dict[tuple[int, int, int], list[int]] = {}
        for i, (shape, group) in enumerate(zip(shapes, groups)):
            rows, cols = matrix_shape(shape)
            if rows * cols == 0:
                raise ValueError(f"tensor {i} of shape {tuple(shape)} is empty; leave it out of the layout")
            h, w = chunk_size(rows, chunk), chunk_size(cols, chunk)
            geometry.append((tuple(int(s) for s in shape), rows, cols, h, w))
            keys.setdefault((group, h, w), []).append(i)
        offsets: dict[int, tuple[int, int]] = {}
        buckets = []
        for b, ((group, h, w), members) in enumerate(keys.items()):
            offset = 0
            for i in members:
                _, rows, cols, _, _ = geometry[i]
                offsets[i] = (b, offset)
                offset += (rows // h) * (cols // w)
            buckets.append(BucketSpec(b, group, h, w, min(topk, h * w), offset, tuple(members)))
        tensors = tuple(
            TensorSpec(i, shape, rows, cols, h, w, *offsets[i]) for i, (shape, rows, cols, h, w) in enumerate(geometry)
        )
        return cls(tensors, tuple(buckets), chunk, topk, cut_topk)

    def cut(self) -> "Layout":
        """The same blocks with ``cut_topk`` coefficients kept per block: the layout an aggregate's cut is encoded
        and checked in (itself when ``cut_topk`` is 0 or topk)."""
        if self.cut_topk in (0, self.topk):
            return self
        buckets = tuple(replace(b, k=min(self.cut_topk, b.block_size)) for b in self.buckets)
        return replace(self, buckets=buckets, topk=self.cut_topk, cut_topk=0)

    @property
    def num_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    def fingerprint(self) -> str:
        """A short hash that two peers compare to know they cut the model the same way."""
        text = json.dumps([asdict(t) for t in self.tensors] + [self.chunk, self.topk], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
