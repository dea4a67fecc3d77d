"""The chunking rule and the DCT against brute force: a DCT-II matrix built from its definition, and its inverse."""

import math

import pytest
import torch

from demo_node.core.dct import Basis, chunk_size, dct_matrix, inverse_dense, inverse_sparse


def brute_chunk(n, target):
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return n if n <= target else max(d for d in divisors if d <= target)


@pytest.mark.parametrize("target", [1, 7, 16, 64, 100])
def test_chunk_size_is_largest_divisor_not_above_target(target):
    for n in range(1, 400):
        assert chunk_size(n, target) == brute_chunk(n, target), (n, target)


def test_chunk_size_examples_from_the_reference_rule():
    assert chunk_size(1152, 64) == 64
    assert chunk_size(50304, 64) == 64
    assert chunk_size(65537, 64) == 1  # a prime: chunks of one element
    assert chunk_size(50257, 64) == 29  # 29 * 1733
    assert chunk_size(48, 64) == 48


@pytest.mark.parametrize("n", [1, 2, 5, 8, 64])
def test_dct_matrix_matches_definition_and_is_orthonormal(n):
    d = dct_matrix(n, dtype=torch.float64)
    x = torch.randn(n, dtype=torch.float64)
    brute = torch.zeros(n, dtype=torch.float64)
    for k in range(n):
        scale = math.sqrt(1.0 / n) if k == 0 else math.sqrt(2.0 / n)
        brute[k] = scale * sum(x[i] * math.cos(math.pi * (2 * i + 1) * k / (2 * n)) for i in range(n))
    torch.testing.assert_close(d @ x, brute)
    torch.testing.assert_close(d @ d.T, torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(d.T @ (d @ x), x)  # the inverse


def test_2d_block_transform_is_separable_dct():
    h, w = 4, 6
    x = torch.randn(h, w, dtype=torch.float64)
    c = dct_matrix(h, dtype=torch.float64) @ x @ dct_matrix(w, dtype=torch.float64).T
    brute = torch.zeros(h, w, dtype=torch.float64)
    for b in range(h):
        for d in range(w):
            sb = math.sqrt((1 if b == 0 else 2) / h)
            sd = math.sqrt((1 if d == 0 else 2) / w)
            brute[b, d] = sb * sd * sum(
                x[i, j] * math.cos(math.pi * (2 * i + 1) * b / (2 * h)) * math.cos(math.pi * (2 * j + 1) * d / (2 * w))
                for i in range(h)
                for j in range(w)
            )
    torch.testing.assert_close(c, brute)


@pytest.mark.parametrize("h,w,k", [(8, 8, 3), (8, 8, 12), (1, 16, 5), (4, 6, 24)])
def test_sparse_and_dense_inverse_agree_with_brute_force(h, w, k):
    n = 7
    basis = Basis(h, w, torch.device("cpu"))
    idx = torch.stack([torch.randperm(h * w)[:k] for _ in range(n)])
    coeff = torch.randn(n, k)
    dense = torch.zeros(n, h * w).scatter_add_(1, idx, coeff).view(n, h, w)
    dh, dw = dct_matrix(h, dtype=torch.float64), dct_matrix(w, dtype=torch.float64)
    brute = (dh.T @ dense.double() @ dw).float()
    out_s = inverse_sparse(basis, idx, coeff, torch.empty(n, h, w), torch.empty(n * k, h), torch.empty(n * k, w))
    out_d = inverse_dense(basis, dense, torch.empty(n, h, w), torch.empty(n, h, w))
    torch.testing.assert_close(out_s, brute, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_d, brute, rtol=1e-5, atol=1e-5)
