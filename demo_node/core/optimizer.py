"""The DeMo optimizer (Decoupled Momentum Optimization, arXiv 2411.19870) with its exchange split from its math.

Per parameter tensor, with gradient g (the reference's equations, its defaults):

1. ``m = beta * m + lr * g``  (``momentum="reference"``)  or  ``m = beta * m + (1 - beta) * g``  (``"ema"``, paper v2)
2. transform m by a chunked orthonormal DCT-II (see :mod:`demo_node.core.layout`), keep the top-k coefficients of
   each block by magnitude, quantise their values (:mod:`demo_node.core.quantize`)
3. ``m -= residual_alpha * IDCT(kept)``  (error feedback; 1.0 in the reference, 0.2 was best in the paper's v2)
4. exchange the kept coefficients with the round's peers, aggregate them (:mod:`demo_node.core.aggregate`)
5. ``p = p * (1 - lr * weight_decay) - lr * sign(IDCT(aggregate))``

``prepare()`` does 1-3 and returns this node's :class:`Contribution`; ``apply(aggregate)`` does 5; ``step()`` does
both for a single process, where the aggregate is this node's own contribution. Nothing here touches a network.

The momentum lives in the DCT domain (see :mod:`demo_node.core.buckets`) and is part of ``state_dict()``, so a
resumed run makes exactly the update an uninterrupted one would. Parameters may be fp32 or bf16, on CPU or CUDA;
the momentum is kept in fp32.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

from demo_node.core.aggregate import Aggregate, aggregate
from demo_node.core.buckets import BucketState
from demo_node.core.config import DeMoConfig
from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.layout import Layout
from demo_node.core.quantize import quantize
from demo_node.core.update import SignComputer, SignUpdate


class DeMo(torch.optim.Optimizer):
    """DeMo as a ``torch.optim.Optimizer``: param groups may set their own ``lr`` and ``weight_decay``."""

    def __init__(self, params: Iterable, lr: float | None = None, *, config: DeMoConfig | None = None, **options):
        if config is not None:
            if options or lr is not None:
                raise TypeError("give DeMo either a config or options, not both")
            self.config = config.validate()
        else:
            self.config = DeMoConfig(**({} if lr is None else {"lr": lr}), **options).validate()
        lr = self.config.lr
        super().__init__(params, {"lr": lr, "weight_decay": self.config.weight_decay})
        self._buckets: list[BucketState] | None = None
        self._layout: Layout | None = None
        self._signs: SignComputer | None = None

    # -- layout and working state ------------------------------------------------------------------------------
    def _trainable(self) -> list[tuple[int, torch.Tensor]]:
        return [
            (g, p)
            for g, group in enumerate(self.param_groups)
            for p in group["params"]
            if p.requires_grad and p.numel() > 0
        ]

    @property
    def layout(self) -> Layout:
        """How this optimizer's tensors are cut into blocks: the codec needs it to encode and check payloads."""
        if self._layout is None:
            trainable = self._trainable()
            self._layout = Layout.build(
                [tuple(p.shape) for _, p in trainable], [g for g, _ in trainable], self.config.chunk, self.config.topk,
                self.config.cut_topk)
        return self._layout

    def _state(self) -> list[BucketState]:
        """Bucket states, built on first use; a loaded state_dict's momentum is copied in here."""
        if self._buckets is None:
            params = [p for _, p in self._trainable()]
            layout = self.layout
            buckets = []
            for spec in layout.buckets:
                members = [params[i] for i in spec.tensors]
                saved = [self.state[p].get("momentum") for p in members]
                bucket = BucketState(spec, [layout.tensors[i] for i in spec.tensors], members, saved)
                for p, view in zip(members, bucket.views):
                    self.state[p]["momentum"] = view  # state_dict() saves the live buffer
                buckets.append(bucket)
            self._buckets = buckets
            self._signs = SignComputer(layout, buckets[0].device if buckets else "cpu")
        return self._buckets

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._buckets, self._layout = None, None

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._buckets, self._layout = None, None  # rebuilt from the loaded momentum on next use

    # -- the exchange-free halves of a step --------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, samples: float = 1.0) -> Contribution:
        """Fold the current gradients into the momentum and return the coefficients to transmit this round.

        The transmitted components are removed from the momentum here (error feedback), so a contribution that
        never reaches the round must be handed back with :meth:`restore` to keep its signal.
        """
        cfg = self.config
        parts = {}
        for bucket in self._state():
            group = self.param_groups[bucket.spec.group]
            scale = group["lr"] if cfg.momentum == "reference" else 1.0 - cfg.beta
            bucket.accumulate([p.grad for p in bucket.params], cfg.beta, scale)
            idx, flat = bucket.select(bucket.spec.k)
            current = bucket.take(flat)
            values = quantize(current, cfg.values)
            bucket.subtract(flat, values.dequantize(), cfg.residual_alpha, current)
            parts[bucket.spec.index] = BucketPart(0, idx, values)
        return Contribution(parts, samples=float(samples))

    @torch.no_grad()
    def restore(self, contribution: Contribution) -> None:
        """Put a contribution that was left out of its round back into the momentum (undo its subtraction)."""
        buckets = self._state()
        for b, part in contribution.parts.items():
            bucket = buckets[b]
            flat = bucket.flat_positions(part.indices.to(bucket.device), part.start)
            bucket.subtract(flat, part.values.to(bucket.device).dequantize(), -self.config.residual_alpha)

    @torch.no_grad()
    def aggregate(self, contributions: Sequence[Contribution]) -> Aggregate:
        """This optimizer's aggregation rule over contributions (in an order every peer agrees on)."""
        buckets = self._state()
        moved = [
            Contribution(
                {b: BucketPart(p.start, p.indices.to(buckets[b].device), p.values.to(buckets[b].device))
                 for b, p in c.parts.items()},
                c.samples,
                c.meta,
            )
            for c in contributions
        ]
        sizes = {b.spec.index: b.spec.block_size for b in buckets}
        return aggregate(moved, self.config.aggregation, sizes)

    @torch.no_grad()
    def apply(self, update: Aggregate | Sequence[Contribution]) -> None:
        """Apply a round's aggregate: p = p * (1 - lr * wd) - lr * sign(IDCT(aggregate)), for every tensor."""
        agg = update if isinstance(update, Aggregate) else self.aggregate(update)
        buckets = self._state()
        for bucket in buckets:
            part = agg.parts.get(bucket.spec.index)
            if part is None or part.start != 0 or part.stop != bucket.spec.num_blocks:
                raise ValueError(f"the aggregate does not cover every block of bucket {bucket.spec.index}")
        assert self._signs is not None
        signs = self._signs.signs(agg, out={b.spec.index: b.signs_buffer() for b in buckets})
        self._apply(buckets, signs)

    def sign_buffers(self) -> dict[int, torch.Tensor]:
        """Bucket -> the (N, h, w) buffer where :meth:`apply_signs` assembles a round's signs. A caller that computes
        signs may write them here directly (then passes the written views as pieces): nothing is copied."""
        return {b.spec.index: b.signs_buffer() for b in self._state()}

    @torch.no_grad()
    def apply_signs(self, pieces: Iterable[tuple[int, int, torch.Tensor]]) -> None:
        """Apply update signs computed elsewhere, as (bucket, first block, signs (n, h, w)) pieces (from the owners
        of a round's shards). Blocks no piece covers get no sign step this round; weight decay still applies to
        every tensor alike."""
        buckets = self._state()
        by_bucket: dict[int, list[tuple[int, torch.Tensor]]] = {}
        for b, start, s in pieces:
            by_bucket.setdefault(b, []).append((start, s))
        full = {}
        for bucket in buckets:
            buf = bucket.signs_buffer()
            covered = 0
            for start, s in sorted(by_bucket.get(bucket.spec.index, []), key=lambda piece: piece[0]):
                if start < covered:
                    raise ValueError(f"pieces of bucket {bucket.spec.index} overlap at block {start}")
                buf[covered:start].zero_()  # blocks no piece covers: no sign step
                dst = buf[start : start + s.shape[0]]
                if s.data_ptr() != dst.data_ptr():  # already in place when written through sign_buffers()
                    dst.copy_(s.view(-1, bucket.spec.h, bucket.spec.w))
                covered = start + s.shape[0]
            buf[covered:].zero_()
            full[bucket.spec.index] = (0, buf)
        self._apply(buckets, full)

    def _apply(self, buckets: list[BucketState], signs: SignUpdate) -> None:
        for bucket in buckets:
            group = self.param_groups[bucket.spec.group]
            bucket.apply_signs(signs[bucket.spec.index][1], group["lr"], group["weight_decay"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """A single-process step: prepare, then apply this node's own contribution as the aggregate."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.apply([self.prepare()])
        return loss

