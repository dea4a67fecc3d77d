"""From aggregated coefficients to the update's signs: sign(IDCT(aggregate)) over blocks of a layout.

Used by the optimizer for its own apply and, with a separate instance (its own workspaces, so it can run on
another thread), by a node that owns a shard of a round and computes the update for that shard alone.
"""

from __future__ import annotations

import torch

from demo_node.core.aggregate import Aggregate, AggregatePart
from demo_node.core.dct import Basis, inverse_dense, inverse_sparse
from demo_node.core.layout import Layout

SignUpdate = dict[int, tuple[int, torch.Tensor]]
"""Bucket -> (first block, signs (N, h, w) float32 in {-1, 0, 1}) for the blocks covered."""


class SignComputer:
    def __init__(self, layout: Layout, device: torch.device | str = "cpu"):
        self.layout = layout
        self.device = torch.device(device)
        self._bases: dict[tuple[int, int], Basis] = {}
        self._workspaces: dict[str, torch.Tensor] = {}

    def _basis(self, h: int, w: int) -> Basis:
        if (h, w) not in self._bases:
            self._bases[(h, w)] = Basis(h, w, self.device)
        return self._bases[(h, w)]

    def _workspace(self, name: str, numel: int) -> torch.Tensor:
        """A reusable buffer: fresh large allocations page-fault on every round on the CPU."""
        buf = self._workspaces.get(name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=torch.float32, device=self.device)
            self._workspaces[name] = buf
        return buf[:numel]

    def inverse(self, bucket: int, part: AggregatePart, out: torch.Tensor | None = None) -> torch.Tensor:
        """IDCT of one bucket's aggregated blocks, (N, h, w), into ``out`` or a workspace."""
        spec = self.layout.buckets[bucket]
        h, w = spec.h, spec.w
        n, k = part.indices.shape
        if out is None:
            out = self._workspace(f"out{bucket}", n * h * w).view(n, h, w)
        basis = self._basis(h, w)
        if 2 * k <= h + w:
            # few coefficients per block: a product of gathered basis rows beats two dense products
            ga = self._workspace("gather_a", n * k * h).view(n * k, h)
            gb = self._workspace("gather_b", n * k * w).view(n * k, w)
            return inverse_sparse(basis, part.indices, part.coeff, out, ga, gb)
        dense = self._workspace("dense", n * h * w).view(n, h * w)
        dense.zero_().scatter_add_(1, part.indices, part.coeff)
        tmp = self._workspace("dense_tmp", n * h * w).view(n, h, w)
        return inverse_dense(basis, dense.view(n, h, w), out, tmp)

    def signs(self, agg: Aggregate, out: dict[int, torch.Tensor] | None = None) -> SignUpdate:
        """sign(IDCT) of every part of the aggregate; ``out`` may give a whole bucket's (N, h, w) buffer."""
        result = {}
        for b, part in agg.parts.items():
            target = None if out is None else out[b][part.start : part.stop]
            result[b] = (part.start, self.inverse(b, part, target).sign_())
        return result
