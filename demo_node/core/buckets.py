"""The working state of one bucket: its momentum (kept in the DCT domain), workspaces, and the hot-path kernels.

The momentum of every tensor is stored as DCT coefficients in the tensor's own matrix layout (coefficient (b, d)
of block (i, j) sits at row i*h + b, column j*w + d). That layout lets the forward transform run as two large
matrix products per tensor with no copy of the gradient, fused with the momentum update. Because the transform is
orthonormal, removing the transmitted components is a masked subtraction: no inverse transform on the way out.
All tensors of a bucket live in one flat buffer, so selection, gather and subtraction are one call per bucket.
"""

from __future__ import annotations

from typing import Sequence

import torch

from demo_node.core.dct import Basis
from demo_node.core.layout import BucketSpec, TensorSpec


class BucketState:
    def __init__(
        self,
        spec: BucketSpec,
        tensors: Sequence[TensorSpec],
        params: Sequence[torch.Tensor],
        momenta: Sequence[torch.Tensor | None],
    ):
        self.spec = spec
        self.tensors = list(tensors)
        self.params = list(params)
        device = self.params[0].device
        for p, t in zip(self.params, self.tensors):
            if p.device != device:
                raise ValueError(f"tensors of one bucket must share a device: tensor {t.index} is on {p.device}")
            if not p.is_contiguous():
                raise ValueError(f"tensor {t.index} of shape {tuple(p.shape)} is not contiguous")
        self.device = device
        h, w = spec.h, spec.w
        self.basis = Basis(h, w, device)
        numel = spec.num_blocks * h * w
        self.momentum = torch.zeros(numel, dtype=torch.float32, device=device)
        # scratch holds, in turn: the half-transformed gradient, |momentum| in block order, the inverse transform
        self.scratch = torch.empty(numel, dtype=torch.float32, device=device)
        self.views: list[torch.Tensor] = []
        self._regions: list[tuple[int, int]] = []
        base, stride = [], []
        pos = 0
        for t, saved in zip(self.tensors, momenta):
            view = self.momentum[pos : pos + t.numel].view(t.rows, t.cols)
            if saved is not None:
                view.copy_(saved.reshape(t.rows, t.cols))
            self.views.append(view)
            self._regions.append((pos, pos + t.numel))
            rows_b, cols_b = t.grid
            i = torch.arange(rows_b, device=device).repeat_interleave(cols_b)
            j = torch.arange(cols_b, device=device).repeat(rows_b)
            base.append(pos + i * h * t.cols + j * w)  # flat position of each block's coefficient (0, 0)
            stride.append(torch.full((t.num_blocks,), t.cols, device=device))
            pos += t.numel
        self.block_base = torch.cat(base).unsqueeze(1)  # (N, 1)
        self.row_stride = torch.cat(stride).unsqueeze(1)  # (N, 1)

    # -- helpers -----------------------------------------------------------------------------------------------
    def _scratch_of(self, n: int) -> torch.Tensor:
        start, stop = self._regions[n]
        return self.scratch[start:stop]

    def signs_buffer(self) -> torch.Tensor:
        """The scratch as (N, h, w): where this bucket's update signs are assembled before they are applied."""
        return self.scratch.view(-1, self.spec.h, self.spec.w)

    def blocks_of(self, n: int) -> slice:
        """Bucket blocks that tensor ``n`` (position inside the bucket) owns."""
        t = self.tensors[n]
        return slice(t.offset, t.offset + t.num_blocks)

    # -- prepare -----------------------------------------------------------------------------------------------
    def accumulate(self, grads: Sequence[torch.Tensor | None], beta: float, scale: float) -> None:
        """momentum = beta * momentum + scale * DCT(grad) for every tensor, then |momentum| in block order."""
        if self.spec.h == 1:
            self._accumulate_rows(grads, beta, scale)
            return
        h, w = self.spec.h, self.spec.w
        basis = self.basis
        for n, (t, m, g) in enumerate(zip(self.tensors, self.views, grads)):
            rows_b, cols_b = t.grid
            work = self._scratch_of(n)
            if g is None:
                m.mul_(beta)  # no gradient this round counts as a zero gradient: the momentum still decays
            else:
                g2 = g.reshape(t.rows, t.cols).to(torch.float32)
                half = work.view(rows_b, h, t.cols)
                torch.matmul(basis.dh, g2.view(rows_b, h, t.cols), out=half)  # Dh @ G per row of blocks
                m.view(-1, w).addmm_(half.view(-1, w), basis.dw_t, beta=beta, alpha=scale)  # (Dh @ G) @ Dw.T
            # one pass reads the momentum in matrix layout and writes |momentum| block by block
            torch.abs(m.view(rows_b, h, cols_b, w).permute(0, 2, 1, 3), out=work.view(rows_b, cols_b, h, w))

    def _accumulate_rows(self, grads: Sequence[torch.Tensor | None], beta: float, scale: float) -> None:
        """The h == 1 case (vectors, and matrices whose rows are chunks of one): the matrix layout is already
        the block layout, so every tensor of the bucket goes through one product."""
        w = self.spec.w
        flat = [torch.zeros(t.numel, device=self.device) if g is None else g.reshape(-1) for t, g in zip(self.tensors, grads)]
        gathered = self.scratch.view(-1)
        torch.cat(flat, out=gathered)  # casts bf16 gradients to the fp32 scratch on the way
        self.momentum.view(-1, w).addmm_(gathered.view(-1, w), self.basis.dw_t, beta=beta, alpha=scale)
        torch.abs(self.momentum, out=self.scratch)

    def select(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k coefficients of every block by magnitude: (indices inside blocks, ascending; flat positions)."""
        mags = self.scratch.view(self.spec.num_blocks, self.spec.block_size)
        idx = torch.topk(mags, k, dim=1, largest=True, sorted=False).indices
        idx = torch.sort(idx, dim=1).values  # a canonical order: every peer then sums in the same order
        return idx, self.flat_positions(idx, 0)

    def flat_positions(self, idx: torch.Tensor, start: int) -> torch.Tensor:
        """Positions in the flat momentum of coefficient ``idx`` of bucket blocks [start, start + N)."""
        w = self.spec.w
        rows = slice(start, start + idx.shape[0])
        return self.block_base[rows] + torch.div(idx, w, rounding_mode="floor") * self.row_stride[rows] + idx % w

    def take(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.take(self.momentum, flat)

    def subtract(self, flat: torch.Tensor, values: torch.Tensor, alpha: float, current: torch.Tensor | None = None) -> None:
        """Error feedback: momentum[flat] -= alpha * values (what was transmitted). ``current`` is
        ``take(flat)`` when the caller has it already; positions are distinct, so a plain write does."""
        if current is None:
            current = self.take(flat)
        self.momentum.index_put_((flat.reshape(-1),), (current - alpha * values).reshape(-1))

    # -- apply -------------------------------------------------------------------------------------------------
    def apply_signs(self, signs: torch.Tensor, lr: float, weight_decay: float) -> None:
        """p = p * (1 - lr * wd) - lr * signs, with ``signs`` (N, h, w) in block order for the whole bucket."""
        h, w = self.spec.h, self.spec.w
        if weight_decay != 0.0:
            torch._foreach_mul_(self.params, 1.0 - lr * weight_decay)
        if h == 1:
            # block layout is matrix layout: one foreach call over the bucket
            pieces = [signs[self.blocks_of(n)].view(p.shape) for n, p in enumerate(self.params)]
            torch._foreach_add_(self.params, pieces, alpha=-lr)
            return
        for n, (t, p) in enumerate(zip(self.tensors, self.params)):
            rows_b, cols_b = t.grid
            s = signs[self.blocks_of(n)].view(rows_b, cols_b, h, w).permute(0, 2, 1, 3)
            p.view(rows_b, h, cols_b, w).add_(s, alpha=-lr)
