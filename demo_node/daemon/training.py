"""What ``demo-node join`` trains on one process: the model of the run's spec, this rank's stream of token windows,
and the held-out evaluation. It knows nothing of peers: the swarm optimizer does the rest."""

from __future__ import annotations

import time

import torch

from demo_node.daemon.config import TrainConfig
from demo_node.daemon.workload import Workload
from demo_node.data.stream import WindowStream, held_out_windows
from demo_node.models.spec import build_model, enable_grad_checkpointing


class LocalTraining:
    """Model, data and the forward/backward of one process."""

    def __init__(self, workload: Workload, train: TrainConfig, device: torch.device, seed: int, stream_seed: int):
        self.train = train
        self.device = device
        if train.threads:
            torch.set_num_threads(train.threads)
        self.workload = workload
        self.model = build_model(workload.spec, self.device, seed=seed)
        if train.grad_checkpointing:
            enable_grad_checkpointing(self.model)
        self.context = workload.context
        self.batches = WindowStream(workload.corpus, self.context, train.batch_size, stream_seed)
        self.eval_x, self.eval_y = held_out_windows(workload.corpus, self.context, train.eval_windows)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def micro_batch(self) -> tuple[float, int]:
        """One forward + backward, gradients accumulated; returns (loss, samples)."""
        start = time.monotonic()
        x, y = self.batches.next()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.autocast:
            loss = self.model(x, y)
        loss.backward()
        value = float(loss.detach())
        if self.train.slowdown > 1.0:
            time.sleep((time.monotonic() - start) * (self.train.slowdown - 1.0))
        return value, x.shape[0]

    def average_gradients(self, micro_batches: int) -> None:
        """Turn the sum of ``micro_batches`` accumulated gradients into their mean."""
        if micro_batches > 1:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.div_(micro_batches)

    @torch.no_grad()
    def eval_loss(self) -> float:
        """The mean loss over the held-out windows, in chunks of at most a batch (the same windows on every node)."""
        self.model.eval()
        total, n, step = 0.0, len(self.eval_x), self.train.batch_size
        with self.autocast:
            for i in range(0, n, step):
                x, y = self.eval_x[i:i + step].to(self.device), self.eval_y[i:i + step].to(self.device)
                total += float(self.model(x, y)) * len(x)
        self.model.train()
        return total / n

    @torch.no_grad()
    def finite(self) -> bool:
        """Whether every parameter is finite."""
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    @torch.no_grad()
    def inject_fault(self) -> None:
        """A silent corruption of one parameter, as a bad memory bit would make (for testing the digest repair)."""
        next(self.model.parameters()).view(-1)[0] += 1.0
