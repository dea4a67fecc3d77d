"""How much memory training a model takes on one process (parameters, gradients, DeMo's state and buffers,
activations), what a device has free, and a clear refusal to start when it does not fit.

The estimate is the peak of a training step in which gradients of an earlier micro-batch are held while the next
one's forward and backward run (the node accumulates micro-batches), with DeMo's buffers from earlier rounds
alive: the sum of the parts. One micro-batch per round peaks lower, by up to the gradients.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from demo_node.core.config import DeMoConfig
from demo_node.core.layout import Layout
from demo_node.models.activations import activation_bytes, shape_of
from demo_node.models.spec import spec_parameter_shapes

GIB = 2**30
PARAM_DTYPES = {"fp32": 4, "bf16": 2}
_INT64 = 8
_VALUE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "sign": 1}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, by part, that one process of a node holds at its peak."""

    params: int
    gradients: int
    momentum: int
    """DeMo: the fp32 momentum and the same-sized scratch of every bucket, the inverse transform's workspaces and
    what a step allocates on the way (top-k, the contribution)."""
    activations: int
    """What the forward pass keeps for the backward pass, the logits included (see models.activations)."""
    exchange: int
    """With several ranks: the flat copy of the gradients that they average."""
    total: int
    batch_size: int
    context: int
    grad_checkpointing: bool
    ranks: int
    """Processes of this node; on a CPU they share its memory (only rank 0 holds DeMo's state)."""

    def required(self, device: torch.device | str) -> int:
        """Bytes ``device`` must have free: one process's on a GPU (one per rank), every rank's on the CPU."""
        if torch.device(device).type == "cpu" and self.ranks > 1:
            return self.total + (self.ranks - 1) * (self.total - self.momentum)
        return self.total

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"parameters {self.params / GIB:.2f} GiB", f"gradients {self.gradients / GIB:.2f} GiB",
                 f"DeMo momentum and buffers {self.momentum / GIB:.2f} GiB",
                 f"activations {self.activations / GIB:.2f} GiB"]
        if self.exchange:
            parts.append(f"rank exchange {self.exchange / GIB:.2f} GiB")
        return f"{self.total / GIB:.2f} GiB per process ({', '.join(parts)})"


class DoesNotFit(MemoryError):
    """Training would not fit in the device's free memory; the message states each part and what to change."""


def demo_bytes(shapes: list[tuple[int, ...]], demo: DeMoConfig, grad_bytes: int) -> int:
    """What DeMo (demo_node.core) holds and allocates at most for tensors of these shapes."""
    layout = Layout.build(shapes, [0] * len(shapes), demo.chunk, demo.topk)
    n = layout.num_params
    state = 2 * 4 * n  # per bucket: the fp32 momentum and a scratch of the same size (core.buckets)
    gather_a = gather_b = dense = 0
    contribution = working = 0
    for b in layout.buckets:
        kept = b.num_blocks * b.k
        if 2 * b.k <= b.h + b.w:  # the sparse inverse's gathered basis rows (core.update), kept between rounds
            gather_a, gather_b = max(gather_a, kept * b.h * 4), max(gather_b, kept * b.w * 4)
        else:  # the dense inverse's two workspaces
            dense = max(dense, 2 * b.num_blocks * b.h * b.w * 4)
        contribution += kept * (_INT64 + _VALUE_BYTES[demo.values]) + b.num_blocks * 4
        # one bucket at a time: top-k values and indices, their sort, flat positions and the index arithmetic
        # on the way (int64), the taken, quantised and subtracted values (fp32)
        working = max(working, kept * (6 * _INT64 + 4 * 4))
    upcast = 0 if grad_bytes == 4 else 4 * max((t.numel for t in layout.tensors), default=0)  # a bf16 gradient in fp32
    return state + gather_a + gather_b + dense + contribution + working + upcast


def estimate(spec: dict[str, Any], batch_size: int, context: int, *, param_dtype: str = "fp32",
             autocast_bf16: bool = False, grad_checkpointing: bool = False, ranks: int = 1,
             demo: DeMoConfig | None = None) -> MemoryEstimate:
    """The peak memory of one training process of ``spec`` at this micro-batch size and sequence length."""
    if param_dtype not in PARAM_DTYPES:
        raise ValueError(f"param_dtype {param_dtype!r}: choose one of {', '.join(PARAM_DTYPES)}")
    if batch_size < 1 or context < 1 or ranks < 1:
        raise ValueError(f"batch_size, context and ranks must be >= 1, got {batch_size}, {context}, {ranks}")
    shapes = [s for s in spec_parameter_shapes(spec) if math.prod(s) > 0]
    n = sum(math.prod(s) for s in shapes)
    width = PARAM_DTYPES[param_dtype]
    params = gradients = n * width
    momentum = demo_bytes(shapes, demo or DeMoConfig(), width)
    activations = activation_bytes(shape_of(spec), batch_size, context, param_dtype=param_dtype,
                                   autocast_bf16=autocast_bf16, grad_checkpointing=grad_checkpointing)
    exchange = gradients if ranks > 1 else 0
    total = params + gradients + momentum + activations + exchange
    return MemoryEstimate(params, gradients, momentum, activations, exchange, total, batch_size, context,
                          grad_checkpointing, ranks)


def available(device: torch.device | str) -> int | None:
    """Free bytes on ``device``: CUDA's free memory, or on the CPU MemAvailable (within a cgroup's limit);
    None where it cannot be known."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_room()
    return limit if free is None else free if limit is None else min(free, limit)


def _cgroup_room() -> int | None:
    """A container's memory limit less its use (cgroup v2): MemAvailable shows the host's."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def check_fits(estimate: MemoryEstimate, device: torch.device | str) -> None:
    """Raise :class:`DoesNotFit` when ``device`` has less free memory than the estimate needs."""
    free = available(device)
    need = estimate.required(device)
    if free is None or need <= free:
        return
    ranks = f" x {estimate.ranks} ranks sharing it" if torch.device(device).type == "cpu" and estimate.ranks > 1 else ""
    fixes = ([] if estimate.grad_checkpointing else ["--grad-checkpointing"]) + [
        f"a smaller --batch-size (now {estimate.batch_size})", "a shorter --context" if estimate.context > 256 else "",
        "a smaller model"]
    needs = estimate.describe() if need == estimate.total else f"about {need / GIB:.2f} GiB: {estimate.describe()}"
    raise DoesNotFit(f"training does not fit on {device}: it needs {needs}{ranks}, but {free / GIB:.2f} GiB is free; "
                     f"try {', '.join(f for f in fixes if f)}")
