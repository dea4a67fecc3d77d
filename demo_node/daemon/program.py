"""``demo-node join``: one node training the run's model on its corpus, written on the public Python API.

Its loop is what a user's script would be: micro-batches, ``opt.step()``, ``opt.zero_grad()``, an evaluation now and
then, ``opt.leave()`` when asked to stop. It adopts the run's config from its peers before it builds the model.
Under ``torchrun`` a node is several processes (:mod:`demo_node.daemon.ranks`): rank 0 runs the swarm optimizer,
the others compute gradients and receive rank 0's parameters every round.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from torch.optim.lr_scheduler import LambdaLR

from demo_node import Peer, Reporter, SwarmOptimizer, parameter_digest
from demo_node.daemon.settings import FIELDS, Config
from demo_node.daemon.adopt import adopt_run
from demo_node.daemon.ranks import GO, STOP, WAIT, LocalRanks, StartFailed
from demo_node.daemon.training import LocalTraining
from demo_node.daemon.workload import Workload, resolve
from demo_node.data.stream import WindowStream, node_seed
from demo_node.models.memory import check_fits, estimate
from demo_node.options import as_dict


class JoinProgram:
    def __init__(self, cfg: Config, reporter: Reporter):
        self.cfg, self.reporter = cfg, reporter
        self.opt: SwarmOptimizer | None = None
        self.peer: Peer | None = None
        self.ranks: LocalRanks | None = None
        self.stream_seed = 0
        """The seed of this node's data stream (kept in checkpoints: a node restarted with a new peer id reads on)."""
        self._leave = threading.Event()

    def request_leave(self) -> None:
        """Finish the round, checkpoint, leave (safe from a signal handler, also while starting)."""
        self._leave.set()
        if self.opt is not None:
            self.opt.request_leave()

    def start(self) -> None:
        """Settle the run with the swarm, check the memory, read the data, build the model, join. Under torchrun
        every rank takes part in three exchanges, each of which carries a failure, so a rank that fails makes
        the others fail with its message instead of leaving them waiting."""
        self.ranks = ranks = LocalRanks(self.cfg.train.device)
        # 1. rank 0 settles the run with its peers and makes the tokenizer; the others get both
        failure, workload, seed = None, None, 0
        if ranks.leader:
            try:
                self.peer = Peer(self.cfg.network)
                self.cfg = adopt_run(self.cfg, self.peer.runs())
                workload = resolve(self.cfg.workload)
                seed = node_seed(self.cfg.workload.seed, self.peer.peer_id)
            except Exception as exc:
                failure = exc
        said = ranks.share((failure and f"{type(failure).__name__}: {failure}", self.cfg,
                            workload and workload.tokenizer.to_json(), seed))
        if failure is not None:
            raise failure
        if said[0] is not None:
            raise StartFailed(f"rank 0 of this node failed to start: {said[0]}")
        _, self.cfg, tokenizer_json, seed = said
        cfg = self.cfg
        # 2. every rank: its memory check, its data, its model
        try:
            workload = workload or resolve(cfg.workload, tokenizer_json)  # the same tokenizer, not trained again
            self._check_memory(cfg, workload)
            workload.load_data(cfg.workload)
            self.training = LocalTraining(workload, cfg.train, ranks.device, cfg.workload.seed,
                                          ranks.rank_seed(seed))
        except Exception as exc:
            failure = exc
        ranks.agree(failure)
        # 3. rank 0 joins the swarm (a resumed node takes its data stream back), then gives the others its state
        t = self.training
        resumed: dict = {}
        if ranks.leader:
            try:
                self._make_optimizer(cfg, workload, seed)
                if isinstance(self.opt.resumed, dict):
                    resumed = self.opt.resumed
            except Exception as exc:
                failure = exc
        said = ranks.share((failure and f"{type(failure).__name__}: {failure}", resumed.get("data_seed"),
                            resumed.get("data_position")))
        if failure is not None:
            raise failure
        if said[0] is not None:
            raise StartFailed(f"rank 0 of this node failed to join: {said[0]}")
        _, saved_seed, position = said
        if saved_seed is not None:  # a node that restarts without --identity has a new peer id: the seed is kept
            self.stream_seed = saved_seed
            t.batches = WindowStream(workload.corpus, t.context, cfg.train.batch_size, ranks.rank_seed(saved_seed))
        if position is not None:
            t.batches.restore(position)
        ranks.send_params(list(t.model.parameters()))

    def _make_optimizer(self, cfg: Config, workload: Workload, seed: int) -> None:
        t, schedule = self.training, cfg.schedule
        self.stream_seed = seed
        run_options = {k: v for k, v in as_dict(cfg.workload).items() if not FIELDS[k].local}
        self.opt = SwarmOptimizer(
            t.model.parameters(), config=cfg.swarm(), peer=self.peer, reporter=self.reporter,
            run_config={"run": run_options, "schedule": as_dict(schedule), **workload.run_sections()},
            scheduler=lambda opt: LambdaLR(opt, schedule.factor),
            extra_state=lambda: {"data_seed": self.stream_seed, "data_position": t.batches.position,
                                 **workload.checkpoint_extra()},
        )
        if self._leave.is_set():
            self.opt.request_leave()
        self.opt.join()

    def _check_memory(self, cfg: Config, workload: Workload) -> None:
        """State what this process will hold and refuse to start when its device cannot hold it (a rank but the
        first holds no DeMo state)."""
        need = estimate(workload.spec, cfg.train.batch_size, workload.context, demo=cfg.optimizer,
                        autocast_bf16=self.ranks.device.type == "cuda", grad_checkpointing=cfg.train.grad_checkpointing,
                        ranks=self.ranks.size)
        if self.ranks.leader:
            self.reporter.event("memory", device=str(self.ranks.device), **need.as_dict())
        elif self.ranks.device.type == "cuda":
            need = replace(need, momentum=0, total=need.total - need.momentum)
        check_fits(need, self.ranks.device)

    def run(self) -> int:
        ranks, t = self.ranks, self.training
        assert ranks is not None
        if ranks.leader:
            return self._lead()
        params = list(t.model.parameters())
        steps = 0
        while True:
            order, applied = ranks.carry_on(STOP, 0)
            if order == WAIT:
                continue
            self._report_rank(steps, applied, params, last=order == STOP)
            if order == STOP:
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
            ranks.carry_on(WAIT, opt.round - 1)
            opt.wait_round(timeout=1.0)
        while True:
            go = not opt.leave_requested and not (train.max_rounds and opt.rounds_applied >= train.max_rounds)
            last = bool(train.max_rounds) and opt.rounds_applied + 1 >= train.max_rounds
            order, _ = ranks.carry_on(GO if go else STOP, opt.round - 1)
            self._report_rank(steps, opt.round - 1, params, last=order == STOP)
            if order == STOP:
                break
            losses, samples = self._compute(lambda: opt.leave_requested)
            t.average_gradients(len(losses))
            ranks.average_gradients(params)
            samples, loss_sum, micro = ranks.total(samples, sum(losses), len(losses))
            if not opt.leave_requested:  # else this round's gradient is dropped: leaving must not wait for a round
                # the last round of --max-rounds is also the leaving round: no extra round after it
                opt.step(samples=samples, loss=loss_sum / micro, tokens=int(samples) * t.context, last=last)
            opt.zero_grad(set_to_none=True)
            if train.fault_after_rounds and not fault_done and opt.rounds_applied >= train.fault_after_rounds:
                t.inject_fault()  # before the broadcast: the node's ranks keep one digest, the node leaves the swarm's
                fault_done = True
                self.reporter.event("fault_injected", round=opt.round)
            ranks.send_params(params)
            steps += 1
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
