"""The one function that turns a shard's contributions into the update's signs: sign(IDCT(aggregate)).

An owner in sign exchange runs it over the contributions it included and sends the bits; a verifier runs it to check
an owner; every receiver in relay exchange runs it over the relayed payloads of each shard. All pass the
contributions in the shard result's order (ascending sender) and bound them by the same robust rule, so all get the
same signs from the same inputs, and replicas stay identical.
"""

from __future__ import annotations

from typing import Sequence

import torch

from demo_node.core.aggregate import Aggregate, aggregate
from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.layout import Layout
from demo_node.core.robust import Screened, screen
from demo_node.core.update import SignComputer, SignUpdate


class ShardSigns:
    """Aggregation rule, robust bounds and inverse transform of a run, with workspaces of its own: one instance per
    thread."""

    def __init__(self, layout: Layout, aggregation: str, device: torch.device | str = "cpu", *,
                 robust: bool = True, max_sample_weight: float = float("inf")):
        self.layout, self.aggregation = layout, aggregation
        self.robust, self.max_sample_weight = robust, max_sample_weight
        self.device = torch.device(device)
        self._block_sizes = {b.index: b.block_size for b in layout.buckets}
        self._computer = SignComputer(layout, self.device)

    def screen(self, contributions: Sequence[Contribution]) -> Screened:
        """What robust aggregation keeps of these contributions (all, unbounded, when it is off)."""
        if not self.robust:
            return Screened(list(range(len(contributions))), [c.samples for c in contributions],
                            [1.0] * len(contributions))
        return screen(contributions, self.max_sample_weight)

    def aggregate(self, contributions: Sequence[Contribution]) -> Aggregate | None:
        """The robust aggregate of these contributions on this instance's device (None when the rule keeps none)."""
        kept = self.screen(contributions)
        if not kept.kept:
            return None
        moved = [Contribution({b: BucketPart(p.start, p.indices.to(self.device), p.values.to(self.device))
                               for b, p in contributions[i].parts.items()}, contributions[i].samples)
                 for i in kept.kept]
        return aggregate(moved, self.aggregation, self._block_sizes, kept.weights, kept.value_scales)

    @torch.no_grad()
    def values(self, contributions: Sequence[Contribution]) -> SignUpdate:
        """IDCT(aggregate) of the blocks the contributions cover, before the sign (fresh tensors): what a verifier
        compares an owner's signs with (a sign may differ only where the value is next to zero)."""
        agg = self.aggregate(contributions)
        if agg is None:
            return self._zeros(contributions)
        return {b: (part.start, self._computer.inverse(b, part).clone()) for b, part in agg.parts.items()}

    @torch.no_grad()
    def signs(self, contributions: Sequence[Contribution], out: dict[int, torch.Tensor] | None = None) -> SignUpdate:
        """Signs of the blocks the contributions cover (they must all cover the same ones): written into ``out``
        (bucket -> a whole bucket's (N, h, w) buffer, as DeMo.sign_buffers() gives) where given, else into fresh
        tensors. All zero when robust aggregation keeps none of them."""
        agg = self.aggregate(contributions)
        if agg is None:
            zeros = self._zeros(contributions)
            if out is None:
                return zeros
            return {b: (start, out[b][start : start + z.shape[0]].zero_()) for b, (start, z) in zeros.items()}
        return self.inverse_signs(agg, out=out)

    @torch.no_grad()
    def inverse_signs(self, agg: Aggregate, out: dict[int, torch.Tensor] | None = None) -> SignUpdate:
        """sign(IDCT) of aggregated coefficients on this instance's device (``out`` as in :meth:`signs`)."""
        signs = self._computer.signs(agg, out=out)
        if out is not None:
            return signs
        # clone: the computer's workspaces are reused by the next call
        return {b: (start, s.clone()) for b, (start, s) in signs.items()}

    def _zeros(self, contributions: Sequence[Contribution]) -> SignUpdate:
        first = contributions[0]
        out = {}
        for b, part in first.parts.items():
            spec = self.layout.buckets[b]
            out[b] = (part.start, torch.zeros(part.num_blocks, spec.h, spec.w, device=self.device))
        return out
