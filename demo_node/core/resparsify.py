"""An aggregate cut back to its K largest coefficients per block: what a sparse return path sends instead of signs.

In sign exchange an owner sends every node one bit per parameter of its shard, sign(IDCT(aggregate)). The aggregate
itself is sparse (the union of the contributors' top-k per block), so an owner can send its K largest coefficients
per block instead and let every node compute sign(IDCT) itself (gTop-k, Shi et al. 2019). The cut is a pure function
of the aggregate: magnitudes are compared after repeats are summed, and ties go to the smaller index (a stable
sort), so a verifier that recomputes the aggregate from the signed inputs gets the same coefficients. What the cut
drops of a node's own contribution goes back into that node's momentum (:func:`dropped`), as DeMo keeps what it did
not transmit, so the truncation delays signal instead of losing it.
"""

from __future__ import annotations

import torch

from demo_node.core.aggregate import AggregatePart
from demo_node.core.contribution import BucketPart
from demo_node.core.quantize import QuantizedValues


def dense_blocks(part: AggregatePart, block_size: int) -> torch.Tensor:
    """The aggregated coefficients of each block as a dense (N, block_size) float32 tensor (repeats summed)."""
    dense = torch.zeros(part.indices.shape[0], block_size, dtype=torch.float32, device=part.coeff.device)
    return dense.scatter_add_(1, part.indices, part.coeff)


def top_per_block(part: AggregatePart, block_size: int, k: int) -> AggregatePart:
    """The ``k`` coefficients of largest magnitude in each block, indices ascending; ties go to the smaller index.
    A block with fewer than ``k`` non-zero coefficients keeps some zeros (the wire format has a fixed K per block)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    dense = dense_blocks(part, block_size)
    k = min(k, block_size)
    # a stable sort keeps equal magnitudes in index order, so the first k are the same on every node
    order = torch.sort(dense.abs(), dim=1, descending=True, stable=True).indices[:, :k]
    indices = order.sort(dim=1).values
    return AggregatePart(part.start, indices, dense.gather(1, indices))


def dropped(part: BucketPart, kept: torch.Tensor) -> BucketPart:
    """The entries of a node's contribution part whose coefficient the cut did not keep (``kept``: the cut's
    (N, K) ascending indices of the same blocks), as float32 values with the kept ones zeroed: what the node puts back
    into its momentum with ``DeMo.restore``."""
    if kept.shape[0] != part.indices.shape[0]:
        raise ValueError(f"the cut covers {kept.shape[0]} blocks, the part {part.indices.shape[0]}")
    kept = kept.to(part.indices.device)
    pos = torch.searchsorted(kept, part.indices).clamp_(max=kept.shape[1] - 1)
    survived = kept.gather(1, pos) == part.indices
    values = part.values.dequantize().masked_fill(survived, 0.0)
    return BucketPart(part.start, part.indices, QuantizedValues("fp32", values))
