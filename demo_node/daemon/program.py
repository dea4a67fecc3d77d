"""``demo-node join``: one node training the built-in GPT on a text corpus, written on the public Python API.

Its loop is what a user's script would be: micro-batches, ``opt.step()``, ``opt.zero_grad()``, an evaluation now and
then, ``opt.leave()`` when asked to stop. It adopts the run's config from its peers before it builds the model.
"""

from __future__ import annotations

import threading
import time

from torch.optim.lr_scheduler import LambdaLR

from demo_node import Peer, Reporter, SwarmOptimizer
from demo_node.config import Config
from demo_node.daemon.adopt import adopt_run
from demo_node.daemon.training import LocalTraining
from demo_node.options import as_dict


class JoinProgram:
    def __init__(self, cfg: Config, reporter: Reporter):
        self.cfg, self.reporter = cfg, reporter
        self.opt: SwarmOptimizer | None = None
        self.peer: Peer | None = None
        self._leave = threading.Event()

    def request_leave(self) -> None:
        """Finish the round, checkpoint, leave (safe from a signal handler, also while starting)."""
        self._leave.set()
        if self.opt is not None:
            self.opt.request_leave()

    def start(self) -> None:
        cfg = self.cfg
        self.peer = Peer(cfg.network)
        cfg = self.cfg = adopt_run(cfg, self.peer.runs())
        self.training = t = LocalTraining(cfg.workload, cfg.train, self.peer.peer_id)
        schedule = cfg.schedule
        self.opt = SwarmOptimizer(
            t.model.parameters(), config=cfg.swarm(), peer=self.peer, reporter=self.reporter,
            run_config={"run": as_dict(cfg.workload), "schedule": as_dict(schedule)},
            scheduler=lambda opt: LambdaLR(opt, schedule.factor),
            extra_state=lambda: {"data_rng": t.batches.state()},
        )
        if self._leave.is_set():
            self.opt.request_leave()
        self.opt.join()
        if self.opt.resumed is not None:
            t.batches.restore(self.opt.resumed["data_rng"])

    def run(self) -> int:
        opt, t, train = self.opt, self.training, self.cfg.train
        assert opt is not None
        evaluated_at = opt.round // train.eval_every if train.eval_every else 0
        fault_done = False
        while not opt.leave_requested and opt.members < train.min_members:
            opt.wait_round(timeout=1.0)
        while not opt.leave_requested:
            if train.max_rounds and opt.rounds_applied >= train.max_rounds:
                break
            losses, samples = self._compute()
            if opt.leave_requested:
                break  # this round's gradient is dropped: leaving must not wait for another round
            t.average_gradients(len(losses))
            opt.step(samples=samples, loss=sum(losses) / len(losses), tokens=samples * t.context)
            opt.zero_grad(set_to_none=True)
            if train.fault_after_rounds and not fault_done and opt.rounds_applied >= train.fault_after_rounds:
                t.inject_fault()
                fault_done = True
                self.reporter.event("fault_injected", round=opt.round)
            if train.eval_every and opt.round // train.eval_every > evaluated_at:
                evaluated_at = opt.round // train.eval_every
                opt.report_eval(t.eval_loss(), finite=t.finite())
        opt.leave()
        return 0

    def _compute(self) -> tuple[list[float], int]:
        """Micro-batches for one round: ``micro_batches`` of them, or as many as fit in ``compute_seconds``."""
        train, opt = self.cfg.train, self.opt
        begun = time.monotonic()
        losses, samples = [], 0
        while True:
            loss, n = self.training.micro_batch()
            losses.append(loss)
            samples += n
            if opt.leave_requested:
                break
            if train.compute_seconds > 0:
                if time.monotonic() - begun >= train.compute_seconds:
                    break
            elif len(losses) >= train.micro_batches:
                break
        return losses, samples

    def close(self) -> None:
        """Release whatever start() made, after a failed start or a finished run."""
        if self.opt is not None:
            self.opt.leave()
        if self.peer is not None:
            self.peer.close()
