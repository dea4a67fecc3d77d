"""Several processes in one node (``torchrun --nproc-per-node G``): torch.distributed inside the box averages the
gradients, rank 0 alone talks to the swarm, and every rank ends each round with rank 0's parameters.

Why rank 0 sends its parameters rather than every rank applying the update itself: the swarm's update depends on
rounds that rank 0 alone sees (late outcomes with ``--overlap``, a state downloaded after a digest vote), so the
parameters rank 0 holds after ``step()`` are the only thing every rank can agree on. One broadcast of the
parameters per round costs what an all-reduce of the gradients does, inside the box (NVLink/PCIe or shared memory).
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

WAIT = datetime.timedelta(hours=2)
"""How long a rank waits in a collective: rank 0 may wait a long time for the swarm's first members."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class LocalRanks:
    """This process's place among the node's processes; with one process every method is a no-op."""

    def __init__(self, device_setting: str):
        self.size = world_size()
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = self._device(device_setting)
        if self.size > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=WAIT,
                                    device_id=self.device if self.device.type == "cuda" else None)

    def _device(self, setting: str) -> torch.device:
        if setting == "auto":
            setting = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(setting)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)  # one GPU per rank, as torchrun users expect
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    @property
    def leader(self) -> bool:
        """Whether this process talks to the swarm."""
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a config, a tokenizer's JSON: small Python objects)."""
        if not self.many:
            return obj
        box = [obj if self.leader else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def average_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Every rank's gradients become the mean over ranks (one flat all-reduce)."""
        if not self.many:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat.div_(self.size)
        for p, g in zip(params, _unflatten_dense_tensors(flat, grads)):
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)

    def total(self, *values: float) -> list[float]:
        """The sums over ranks of a few numbers (samples, losses)."""
        if not self.many:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def send_params(self, params: Sequence[torch.Tensor]) -> None:
        """Rank 0's parameters into every rank's (one flat broadcast)."""
        if not self.many:
            return
        with torch.no_grad():
            flat = _flatten_dense_tensors([p.data for p in params])
            dist.broadcast(flat, src=0)
            if not self.leader:
                for p, v in zip(params, _unflatten_dense_tensors(flat, [p.data for p in params])):
                    p.copy_(v)

    def carry_on(self, go: bool, applied_round: int) -> tuple[bool, int]:
        """Rank 0's decision to compute another round (True) or stop, with the last swarm round its parameters
        hold, on every rank."""
        if not self.many:
            return go, applied_round
        t = torch.tensor([1 if go else 0, applied_round], dtype=torch.int64, device=self._comm_device)
        dist.broadcast(t, src=0)
        return bool(t[0].item()), int(t[1].item())

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        if self.many and dist.is_initialized():
            dist.destroy_process_group()
