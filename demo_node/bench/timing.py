"""Timing a piece of work the way every benchmark here does: the median of timed calls after warm-up calls, the
device synchronised around each, and a real forward + backward to time."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], iters: int, device: torch.device, warmup: int = 2) -> float:
    """Milliseconds: the median of ``iters`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def forward_backward_on_random_tokens(model: torch.nn.Module, vocab: int, batch: int, context: int,
                                      dev: torch.device) -> Callable[[], None]:
    """One forward + backward of ``model`` on a fixed random batch (bf16 autocast on CUDA, as a node runs), as a
    function to time; it leaves the gradients in the parameters."""
    tokens = torch.randint(0, vocab, (batch, context + 1), device=dev)
    x, y = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = model(x, y)
        loss.backward()

    return fwd_bwd
