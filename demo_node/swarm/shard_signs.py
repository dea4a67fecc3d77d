"""The one function that turns a shard's contributions into the update's signs: sign(IDCT(aggregate)).

An owner in sign exchange runs it over the contributions it included and sends the bits; every receiver in relay
exchange runs it over the relayed payloads of each shard. Both pass the contributions in the shard result's order
(ascending sender), so both get the same signs from the same inputs, and replicas stay identical.
"""

from __future__ import annotations

from typing import Sequence

import torch

from demo_node.core.aggregate import aggregate
from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.layout import Layout
from demo_node.core.update import SignComputer, SignUpdate


class ShardSigns:
    """Aggregation rule and inverse transform of a run, with workspaces of its own: use one instance per thread."""

    def __init__(self, layout: Layout, aggregation: str, device: torch.device | str = "cpu"):
        self.layout, self.aggregation = layout, aggregation
        self.device = torch.device(device)
        self._block_sizes = {b.index: b.block_size for b in layout.buckets}
        self._computer = SignComputer(layout, self.device)

    @torch.no_grad()
    def signs(self, contributions: Sequence[Contribution], out: dict[int, torch.Tensor] | None = None) -> SignUpdate:
        """Signs of the blocks the contributions cover (they must all cover the same ones): written into ``out``
        (bucket -> a whole bucket's (N, h, w) buffer, as DeMo.sign_buffers() gives) where given, else into fresh
        tensors."""
        moved = [Contribution({b: BucketPart(p.start, p.indices.to(self.device), p.values.to(self.device))
                               for b, p in c.parts.items()}, c.samples) for c in contributions]
        agg = aggregate(moved, self.aggregation, self._block_sizes)
        signs = self._computer.signs(agg, out=out)
        if out is not None:
            return signs
        # clone: the computer's workspaces are reused by the next call
        return {b: (start, s.clone()) for b, (start, s) in signs.items()}
