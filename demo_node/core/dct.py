"""Chunked orthonormal DCT-II: the chunking rule, the basis matrices and the two inverse transforms.

A block of shape (h, w) has coefficients ``C = Dh @ X @ Dw.T`` where ``Dn`` is the orthonormal DCT-II matrix
of size n; the inverse is ``X = Dh.T @ C @ Dw``. A coefficient's index inside its block is ``b * w + d``
(row frequency b, column frequency d), the order the reference flattens a block in.
"""

from __future__ import annotations

import functools
import math

import torch


def chunk_size(n: int, target: int) -> int:
    """The reference's chunking rule: the largest divisor of ``n`` that is <= ``target`` (``n`` if n <= target)."""
    if n < 1 or target < 1:
        raise ValueError(f"chunk_size needs positive sizes, got n={n}, target={target}")
    if n <= target:
        return n
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for divisor in (d, n // d):
                if best < divisor <= target:
                    best = divisor
    return best


@functools.lru_cache(maxsize=None)
def _dct_matrix_f64(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)  # frequency, (n, 1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)  # sample, (1, n)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n, n): ``D @ x`` transforms a column vector, ``D.T @ y`` inverts it."""
    return _dct_matrix_f64(n).to(device=device, dtype=dtype)


class Basis:
    """The DCT matrices one bucket of (h, w) blocks needs, on its device, made once."""

    def __init__(self, h: int, w: int, device: torch.device, dtype: torch.dtype = torch.float32):
        self.h, self.w = h, w
        self.dh = dct_matrix(h, device, dtype)  # (h, h)
        self.dw = dct_matrix(w, device, dtype)  # (w, w)
        self.dh_t = self.dh.t().contiguous()
        self.dw_t = self.dw.t().contiguous()


def inverse_sparse(
    basis: Basis, idx: torch.Tensor, coeff: torch.Tensor, out: torch.Tensor, gather_a: torch.Tensor, gather_b: torch.Tensor
) -> torch.Tensor:
    """Inverse DCT of blocks that hold only a few nonzero coefficients.

    ``X = Dh.T @ C @ Dw`` with C having K nonzeros c_j at (b_j, d_j) is ``sum_j c_j Dh[b_j]^T Dw[d_j]``: the product
    of an (h, K) matrix of gathered basis rows (scaled by c) and a (K, w) one, which costs h*w*K multiply-adds per
    block instead of the h*w*(h+w) of two dense products.

    idx, coeff: (N, K); out: (N, h, w); gather_a: (N*K, h) and gather_b: (N*K, w) workspaces.
    """
    n, k = idx.shape
    flat = idx.reshape(-1)
    torch.index_select(basis.dh, 0, torch.div(flat, basis.w, rounding_mode="floor"), out=gather_a)
    torch.index_select(basis.dw, 0, torch.remainder(flat, basis.w), out=gather_b)
    a = gather_a.view(n, k, basis.h)
    a.mul_(coeff.unsqueeze(-1))
    torch.bmm(a.transpose(1, 2), gather_b.view(n, k, basis.w), out=out)  # (N, h, K) @ (N, K, w)
    return out


def inverse_dense(basis: Basis, coeff_blocks: torch.Tensor, out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Inverse DCT of dense coefficient blocks (N, h, w) into ``out`` (N, h, w); ``tmp`` is a workspace of that size."""
    n, h, w = coeff_blocks.shape
    torch.mm(coeff_blocks.reshape(-1, w), basis.dw, out=tmp.view(-1, w))  # C @ Dw, one flat product
    if h == 1:
        out.copy_(tmp)
    else:
        torch.bmm(basis.dh_t.expand(n, h, h), tmp, out=out)  # Dh.T @ (C @ Dw)
    return out
