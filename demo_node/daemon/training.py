"""What ``demo-node join`` trains: the built-in GPT on a byte-level corpus, this node's stream of batches, and the
held-out evaluation. It knows nothing of peers: the swarm optimizer does the rest."""

from __future__ import annotations

import time

import torch

from demo_node.daemon.config import TrainConfig, WorkloadConfig
from demo_node.data.corpus import Batches, Corpus, held_out_batch, node_seed
from demo_node.models.gpt import PRESETS, build


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


class LocalTraining:
    """Model, data and the forward/backward of one node."""

    def __init__(self, workload: WorkloadConfig, train: TrainConfig, peer_id: bytes):
        self.train = train
        self.device = pick_device(train.device)
        if train.threads:
            torch.set_num_threads(train.threads)
        self.model = build(workload.model, self.device, seed=workload.seed)
        self.context = PRESETS[workload.model].context
        self.corpus = Corpus(workload.data)
        self.batches = Batches(self.corpus, self.context, train.batch_size, node_seed(workload.seed, peer_id))
        self.eval_x, self.eval_y = held_out_batch(self.corpus, self.context, train.eval_windows)
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
        self.model.eval()
        with self.autocast:
            loss = self.model(self.eval_x.to(self.device), self.eval_y.to(self.device))
        self.model.train()
        return float(loss)

    @torch.no_grad()
    def finite(self) -> bool:
        """Whether every parameter is finite."""
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    @torch.no_grad()
    def inject_fault(self) -> None:
        """A silent corruption of one parameter, as a bad memory bit would make (for testing the digest repair)."""
        next(self.model.parameters()).view(-1)[0] += 1.0
