"""The benchmark's baseline: a plain re-statement of the reference DeMo step (bloc97/DeMo ``demo.py``).

Written from the reference's equations and operations, one process: per tensor, weight decay, ``delta = beta *
delta + lr * g``, the chunked DCT by ``einsum`` over 4-D block views, top-k of ``|coefficients|`` with int64 indices
and fp32 values, an inverse transform of the transmitted part to subtract it from ``delta``, an "all-gather" of
this process's own (idx, val), ``scatter_reduce(mean)`` into a dense block, a second inverse transform, sign, and
the SGD step. It exists to be timed beside our optimizer and to count the reference's payload bytes.
"""

from __future__ import annotations

import torch

from demo_node.core.dct import chunk_size, dct_matrix
from demo_node.core.layout import matrix_shape


class ReferenceDeMo(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, beta=0.999, topk=32, chunk=64, weight_decay=0.0):
        super().__init__(params, {"lr": lr})
        self.beta, self.topk, self.chunk, self.weight_decay = beta, topk, chunk, weight_decay
        self.bytes_sent = 0
        # the reference's forward matrices F = D.T and backward matrices B = D (einsum "ij, jb -> ib" uses them)
        self.f, self.b = {}, {}

    def _mats(self, n, device):
        if n not in self.f:
            d = dct_matrix(n, device)
            self.f[n], self.b[n] = d.t().contiguous(), d
        return self.f[n], self.b[n]

    def _encode(self, x, h, w):
        rows, cols = x.shape
        fh, _ = self._mats(h, x.device)
        fw, _ = self._mats(w, x.device)
        x = x.view(rows // h, h, cols // w, w)  # "(y h) (x w) -> y h x w"
        return torch.einsum("yhxw,hb,wd->yxbd", x, fh, fw)

    def _decode(self, c):
        y, x, h, w = c.shape
        _, bh = self._mats(h, c.device)
        _, bw = self._mats(w, c.device)
        out = torch.einsum("yxbd,bh,dw->yhxw", c, bh, bw)
        return out.reshape(y * h, x * w)

    @staticmethod
    def _decompress(idx, val, shape):
        x = torch.zeros(shape, dtype=val.dtype, device=val.device)
        flat = x.view(shape[0], shape[1], -1)
        flat.scatter_reduce_(-1, idx, val, reduce="mean", include_self=False)
        return x

    @torch.no_grad()
    def step(self, closure=None):
        self.bytes_sent = 0
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                if not p.requires_grad or p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["delta"] = torch.zeros_like(p)
                if self.weight_decay:
                    p.mul_(1.0 - lr * self.weight_decay)
                delta = state["delta"]
                delta.mul_(self.beta).add_(p.grad, alpha=lr)
                rows, cols = matrix_shape(p.shape)
                h, w = chunk_size(rows, self.chunk), chunk_size(cols, self.chunk)
                coeff = self._encode(delta.view(rows, cols), h, w)  # (y, x, h, w)
                flat = coeff.reshape(coeff.shape[0], coeff.shape[1], -1)
                k = max(1, min(self.topk, flat.shape[-1]))
                idx = torch.topk(flat.abs(), k, dim=-1, largest=True, sorted=False).indices
                val = torch.gather(flat, -1, idx)
                transmitted = self._decode(self._decompress(idx, val, coeff.shape))
                delta.sub_(transmitted.view_as(delta))
                gathered_idx, gathered_val = [idx], [val]  # the all-gather of a world of one
                self.bytes_sent += idx.nbytes + val.nbytes
                new_grad = self._decode(
                    self._decompress(torch.cat(gathered_idx, -1), torch.cat(gathered_val, -1), coeff.shape)
                )
                p.add_(new_grad.view_as(p).sign(), alpha=-lr)
