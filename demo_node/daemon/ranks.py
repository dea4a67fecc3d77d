"""Several processes in one node (``torchrun --nproc-per-node G``): torch.distributed inside the box averages the
gradients, rank 0 alone talks to the swarm, and every rank ends each round with rank 0's parameters.

Why rank 0 sends its parameters rather than every rank applying the update itself: the swarm's update depends on
rounds that rank 0 alone sees (late outcomes with ``--overlap``, a state downloaded after a digest vote), so the
parameters rank 0 holds after ``step()`` are the only thing every rank can agree on. One broadcast of the
parameters per round costs what an all-reduce of the gradients does, inside the box (NVLink/PCIe or shared memory).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from demo_node.errors import DemoNodeError

COLLECTIVE_TIMEOUT = datetime.timedelta(hours=1)
"""How long a rank waits in one collective (a start that downloads a large model's state can take minutes)."""
GO, WAIT, STOP = 1, 2, 0
"""Rank 0's orders at the top of every round."""


class StartFailed(DemoNodeError, ValueError):
    """Another rank of this node could not start (its message says why)."""


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
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                                    device_id=self.device if self.device.type == "cuda" else None)

    def _device(self, setting: str) -> torch.device:
        if self.size > 1 and int(os.environ.get("LOCAL_WORLD_SIZE", self.size)) != self.size:
            raise ValueError("torchrun: a node is the processes of one machine (--nnodes 1); each machine joins the "
                             "swarm as a node of its own")
        if setting == "auto":
            setting = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(setting)
        if device.type == "cuda":
            if self.size > 1 and device.index is not None:
                raise ValueError(f"device: {setting} puts every rank on one GPU; give --device cuda (or auto): rank "
                                 "r uses cuda:r")
            if device.index is None:
                device = torch.device("cuda", self.local_rank)  # one GPU per rank, as torchrun users expect
            if device.index >= torch.cuda.device_count():
                raise ValueError(f"device: {device} does not exist ({torch.cuda.device_count()} GPUs); run at most "
                                 "one rank per GPU")
            torch.cuda.set_device(device)
        return device

    @property
    def leader(self) -> bool:
        """Whether this process talks to the swarm."""
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1

    def rank_seed(self, node_seed: int) -> int:
        """This rank's data-stream seed: the node's for rank 0, one derived from it for the others (so a resumed
        node, whose seed is in its checkpoint, gives every rank its stream back)."""
        if self.rank == 0:
            return node_seed
        h = hashlib.sha256(node_seed.to_bytes(8, "little") + self.rank.to_bytes(4, "little")).digest()
        return int.from_bytes(h[:8], "little")

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

    def carry_on(self, order: int, applied_round: int) -> tuple[int, int]:
        """Rank 0's order for the next round (:data:`GO`, :data:`WAIT` or :data:`STOP`), with the last swarm round
        its parameters hold, on every rank. WAIT is a heartbeat while rank 0 waits for the swarm: no collective
        waits longer than a round or two, however long the swarm takes to fill."""
        if not self.many:
            return order, applied_round
        t = torch.tensor([order, applied_round], dtype=torch.int64, device=self._comm_device)
        dist.broadcast(t, src=0)
        return int(t[0].item()), int(t[1].item())

    def agree(self, failure: BaseException | None) -> None:
        """Every rank says whether its part of the start worked; all raise if one failed (this rank's own error, or
        :class:`StartFailed` with the first failed rank's message), so that no rank waits for one that is gone."""
        if failure is not None and not self.many:
            raise failure
        if not self.many:
            return
        said: list[str | None] = [None] * self.size
        dist.all_gather_object(said, None if failure is None else f"{type(failure).__name__}: {failure}")
        if failure is not None:
            raise failure
        for rank, message in enumerate(said):
            if message is not None:
                raise StartFailed(f"rank {rank} of this node failed to start: {message}")

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        if self.many and dist.is_initialized():
            dist.destroy_process_group()
