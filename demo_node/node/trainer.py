"""The local half of a node: model, data, DeMo optimizer and learning-rate schedule, run by the training thread.

It computes gradients on micro-batches, folds them into the momentum (``prepare``), applies round outcomes, and
produces and installs parameter snapshots. It knows nothing of peers or sockets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from demo_node.config import Config
from demo_node.core import DeMo
from demo_node.core.contribution import Contribution
from demo_node.data.corpus import Batches, Corpus, held_out_batch, node_seed
from demo_node.models.gpt import PRESETS, build
from demo_node.node.digest import digest


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def lr_at(cfg: Config, round: int) -> float:
    """Linear warm-up, then cosine down to 10% of the peak over total_rounds (constant: the peak throughout)."""
    peak = cfg.lr
    if cfg.warmup_rounds and round < cfg.warmup_rounds:
        return peak * (round + 1) / cfg.warmup_rounds
    if cfg.lr_schedule == "constant":
        return peak
    progress = min(1.0, (round - cfg.warmup_rounds) / max(1, cfg.total_rounds - cfg.warmup_rounds))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class ComputeStats:
    samples: int
    tokens: int
    loss: float
    seconds: float


class Trainer:
    def __init__(self, cfg: Config, peer_id: bytes, corpus: Corpus | None = None):
        if cfg.model not in PRESETS:
            raise ValueError(f"model: unknown preset {cfg.model!r} (presets: {', '.join(PRESETS)})")
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model = build(cfg.model, self.device, seed=cfg.seed)
        self.context = PRESETS[cfg.model].context
        self.opt = DeMo(
            self.model.parameters(), lr=lr_at(cfg, 0), beta=cfg.beta, topk=cfg.topk, chunk=cfg.chunk,
            weight_decay=cfg.weight_decay, momentum=cfg.momentum, residual_alpha=cfg.residual_alpha,
            values=cfg.values, aggregation=cfg.aggregation,
        )
        self.corpus = corpus or Corpus(cfg.data)
        self.batches = Batches(self.corpus, self.context, cfg.batch_size, node_seed(cfg.seed, peer_id))
        self.eval_x, self.eval_y = held_out_batch(self.corpus, self.context, cfg.batch_size)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        self.round = 0
        """Rounds applied so far: the parameters are the state after round ``round - 1``."""

    @property
    def layout(self):
        return self.opt.layout

    def set_round_lr(self, round: int) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, round)

    # -- compute -----------------------------------------------------------------------------------------------
    def micro_batch(self) -> tuple[float, int]:
        """One forward + backward, gradients accumulated; returns (loss, samples)."""
        start = time.monotonic()
        x, y = self.batches.next()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.autocast:
            loss = self.model(x, y)
        loss.backward()
        value = float(loss.detach())
        if self.cfg.slowdown > 1.0:
            time.sleep((time.monotonic() - start) * (self.cfg.slowdown - 1.0))
        return value, x.shape[0]

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def prepare(self, samples: int, round: int) -> Contribution:
        """Average the accumulated gradients over the micro-batches and fold them into the momentum."""
        micro = max(1, samples // self.cfg.batch_size)
        if micro > 1:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.div_(micro)
        self.set_round_lr(round)
        contribution = self.opt.prepare(samples=samples)
        self.zero_grad()
        return contribution

    @torch.no_grad()
    def eval_loss(self) -> float:
        self.model.eval()
        with self.autocast:
            loss = self.model(self.eval_x.to(self.device), self.eval_y.to(self.device))
        self.model.train()
        return float(loss)

    # -- parameters --------------------------------------------------------------------------------------------
    def digest(self) -> bytes:
        return digest(self.model.state_dict().values())

    def snapshot(self) -> list[bytes]:
        """Raw little-endian bytes of every tensor of the model's state, in state_dict order."""
        return [t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes()
                for t in self.model.state_dict().values()]

    def tensor_sizes(self) -> list[int]:
        return [t.numel() * t.element_size() for t in self.model.state_dict().values()]

    @torch.no_grad()
    def install(self, blobs: list[bytes]) -> None:
        """Replace the parameters with a snapshot's bytes (the momentum stays: it is this node's own)."""
        state = self.model.state_dict()
        if len(blobs) != len(state):
            raise ValueError(f"snapshot has {len(blobs)} tensors, the model {len(state)}")
        for (name, t), blob in zip(state.items(), blobs):
            if len(blob) != t.numel() * t.element_size():
                raise ValueError(f"snapshot tensor {name}: {len(blob)} bytes, expected {t.numel() * t.element_size()}")
            src = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(t.dtype).view(t.shape)
            t.copy_(src.to(t.device))
