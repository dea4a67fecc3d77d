"""``demo-node join``: one node training the run's model on its corpus, written on the public Python API.

Its loop is what a user's script would be: micro-batches, ``opt.step()``, ``opt.zero_grad()``, an evaluation now and
then, ``opt.leave()`` when asked to stop. It adopts the run's config from its peers before it builds the model.
Under ``torchrun`` a node is several processes (:mod:`demo_node.daemon.ranks`): rank 0 runs the swarm optimizer,
the others compute gradients and receive rank 0's parameters every round.
"""

from __future__ import annotations

import threading
import time

from torch.optim.lr_scheduler import LambdaLR

from demo_node import Peer, Reporter, SwarmOptimizer, parameter_digest
from demo_node.config import FIELDS, Config
from demo_node.daemon.adopt import adopt_run
from demo_node.daemon.ranks import LocalRanks
from demo_node.daemon.training import LocalTraining
from demo_node.daemon.workload import resolve
from demo_node.data.stream import node_seed
from demo_node.models.memory import check_fits, estimate
from demo_node.options import as_dict


class JoinProgram:
    def __init__(self, cfg: Config, reporter: Reporter):
        self.cfg, self.reporter = cfg, reporter
        self.opt: SwarmOptimizer | None = None
        self.peer: Peer | None = None
        self.ranks: LocalRanks | None = None
        self._leave = threading.Event()

    def request_leave(self) -> None:
        """Finish the round, checkpoint, leave (safe from a signal handler, also while starting)."""
        self._leave.set()
        if self.opt is not None:
            self.opt.request_leave()

    def start(self) -> None:
        self.ranks = ranks = LocalRanks(self.cfg.train.device)
        cfg = self.cfg
        if ranks.leader:
            self.peer = Peer(cfg.network)
            cfg = adopt_run(cfg, self.peer.runs())
        cfg = self.cfg = ranks.share(cfg)
        workload = resolve(cfg.workload) if ranks.leader else None
        tokenizer_json = ranks.share(workload.tokenizer.to_json() if ranks.leader else None)
        if workload is None:
            workload = resolve(cfg.workload, tokenizer_json)  # the same tokenizer, not trained again
        peer_id = ranks.share(self.peer.peer_id if ranks.leader else None)
        self._check_memory(cfg, workload)
        stream_seed = node_seed(cfg.workload.seed, peer_id if ranks.rank == 0 else peer_id + bytes([ranks.rank]))
        self.training = t = LocalTraining(workload, cfg.train, ranks.device, cfg.workload.seed, stream_seed)
        position = None
        if ranks.leader:
            schedule = cfg.schedule
            run_options = {k: v for k, v in as_dict(cfg.workload).items() if not FIELDS[k].local}
            self.opt = SwarmOptimizer(
                t.model.parameters(), config=cfg.swarm(), peer=self.peer, reporter=self.reporter,
                run_config={"run": run_options, "schedule": as_dict(schedule), **workload.run_sections()},
                scheduler=lambda opt: LambdaLR(opt, schedule.factor),
                extra_state=lambda: {"data_position": t.batches.position, **workload.checkpoint_extra()},
            )
            if self._leave.is_set():
                self.opt.request_leave()
            self.opt.join()
            if isinstance(self.opt.resumed, dict):
                position = self.opt.resumed.get("data_position")
        position = ranks.share(position)
        if position is not None:
            t.batches.restore(position)
        ranks.send_params(list(t.model.parameters()))

    def _check_memory(self, cfg: Config, workload) -> None:
        """State what this process will hold and refuse to start when its device cannot hold it."""
        need = estimate(workload.spec, cfg.train.batch_size, workload.context,
                        autocast_bf16=self.ranks.device.type == "cuda", grad_checkpointing=cfg.train.grad_checkpointing,
                        ranks=self.ranks.size)
        if self.ranks.leader:
            self.reporter.event("memory", device=str(self.ranks.device), **need.as_dict())
        check_fits(need, self.ranks.device)

    def run(self) -> int:
        ranks, t = self.ranks, self.training
        assert ranks is not None
        if ranks.leader:
            return self._lead()
        params = list(t.model.parameters())
        steps = 0
        while True:
            go, applied = ranks.carry_on(False, 0)
            self._report_rank(steps, applied, params, last=not go)
            if not go:
                return 0
            losses, samples = self._compute(lambda: False)  # rank 0 decides when to stop
            t.average_gradients(len(losses))
            ranks.average_gradients(params)
            ranks.total(samples, sum(losses), len(losses))
            t.model.zero_grad(set_to_none=True)
            ranks.send_params(params)
            steps += 1

    def _report_rank(self, steps: int, applied: int, params, last: bool) -> None:
        """Every eval_every steps (and at the end), this rank's parameter digest with the swarm round it holds: the
        ranks of one node, and the node with its peers, must agree."""
        every = self.cfg.train.eval_every
        if self.ranks.many and steps and (last or (every and steps % every == 0)):
            self.reporter.event("rank_digest", rank=self.ranks.rank, step=steps, applied_round=applied,
                                digest=parameter_digest(params).hex()[:16], last=last)

    def _lead(self) -> int:
        opt, t, train, ranks = self.opt, self.training, self.cfg.train, self.ranks
        assert opt is not None and ranks is not None
        params = list(t.model.parameters())
        evaluated_at = opt.round // train.eval_every if train.eval_every else 0
        fault_done = False
        steps = 0
        while not opt.leave_requested and opt.members < train.min_members:
            opt.wait_round(timeout=1.0)
        while True:
            go = not opt.leave_requested and not (train.max_rounds and opt.rounds_applied >= train.max_rounds)
            go, _ = ranks.carry_on(go, opt.round - 1)
            self._report_rank(steps, opt.round - 1, params, last=not go)
            if not go:
                break
            losses, samples = self._compute(lambda: opt.leave_requested)
            t.average_gradients(len(losses))
            ranks.average_gradients(params)
            samples, loss_sum, micro = ranks.total(samples, sum(losses), len(losses))
            if not opt.leave_requested:  # else this round's gradient is dropped: leaving must not wait for a round
                opt.step(samples=samples, loss=loss_sum / micro, tokens=int(samples) * t.context)
            opt.zero_grad(set_to_none=True)
            ranks.send_params(params)
            steps += 1
            if train.fault_after_rounds and not fault_done and opt.rounds_applied >= train.fault_after_rounds:
                t.inject_fault()
                fault_done = True
                self.reporter.event("fault_injected", round=opt.round)
            if train.eval_every and opt.round // train.eval_every > evaluated_at:
                evaluated_at = opt.round // train.eval_every
                opt.report_eval(t.eval_loss(), finite=t.finite())
        opt.leave()
        return 0

    def _compute(self, stop) -> tuple[list[float], int]:
        """Micro-batches for one round: ``micro_batches`` of them, or as many as fit in ``compute_seconds``."""
        train = self.cfg.train
        begun = time.monotonic()
        losses, samples = [], 0
        while True:
            loss, n = self.training.micro_batch()
            losses.append(loss)
            samples += n
            if stop():
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
        if self.ranks is not None:
            self.ranks.close()
