"""A node's checkpoints: resuming from the newest good one when it starts, writing one every ``checkpoint_every``
rounds and when it leaves (once per round), marked when the swarm vouched for its state, and never letting a full
disk or a read-only folder stop training (see :mod:`demo_node.checkpoint_files` for the files themselves)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import torch

from demo_node import checkpoint_files as checkpoint
from demo_node.node.events import Reporter
from demo_node.node.joining import JoinError
from demo_node.node.replica import Replica
from demo_node.node.stats import NodeStats
from demo_node.run_identity import canonical

log = logging.getLogger(__name__)


class Checkpoints:
    def __init__(self, folder: str, keep: int, every: int, replica: Replica, run_id: str,
                 run_config: Mapping[str, Any], state: Callable[[], dict], load: Callable[[dict], None],
                 extra: Callable[[], Any] | None, stats: NodeStats, reporter: Reporter):
        """``state``/``load``: the optimizer's state_dict and load_state_dict; ``extra``: more state the caller keeps
        (a data stream's position)."""
        self.folder, self.keep, self.every, self.replica = folder, keep, every, replica
        self.run_id, self.run_config, self.state, self.load, self.extra = run_id, run_config, state, load, extra
        self.stats, self.reporter = stats, reporter
        self.written = -1
        """The round of the parameters the last checkpoint holds (leaving writes none if it is the current one)."""

    def resume(self) -> tuple[int | None, Any]:
        """Load the newest good checkpoint into the parameters and the optimizer: (its round, its extra state), or
        (None, None) without one."""
        if not self.folder:
            return None, None
        stale = checkpoint.clean(self.folder)
        if stale:
            log.warning("removed %d temporary checkpoint files that an interrupted write left in %s", stale,
                        self.folder)
        saved = checkpoint.load_latest(self.folder)
        if saved is None:
            return None, None
        if saved["run_id"] != self.run_id:
            raise JoinError(f"checkpoint {saved['path']} belongs to run {saved['run_id']}, not {self.run_id}")
        params = self.replica.params
        if len(saved["params"]) != len(params):
            raise JoinError(f"checkpoint {saved['path']} holds {len(saved['params'])} tensors, the model "
                            f"{len(params)}")
        with torch.no_grad(), self.replica.writing():
            for p, tensor in zip(params, saved["params"]):
                p.copy_(tensor.to(p.device))
        self.load(saved["optimizer"])
        return self.replica.round, saved.get("extra")

    def due(self) -> bool:
        return bool(self.folder) and self.replica.round % self.every == 0

    def save(self, matched: bool, again: bool = True) -> tuple[str, int]:
        """Write one now (``matched``: the swarm vouched for this state); with ``again`` False, none if the last one
        holds these parameters. (path, the last round in it); a failure is said and counted, not raised."""
        after = max(0, self.replica.round - 1)
        if not self.folder or (not again and self.written == self.replica.round):
            return "", after
        try:
            path = checkpoint.save(self.folder, {
                "round": self.replica.round, "run_id": self.run_id, "run_config": canonical(self.run_config),
                "params": [p.detach().cpu() for p in self.replica.params], "optimizer": self.state(),
                "extra": self.extra() if self.extra is not None else None,
            }, matched=matched, keep=self.keep)
        except (OSError, RuntimeError) as exc:  # torch's archive writer turns a full disk into a RuntimeError
            # a full disk or a folder gone read-only must not stop training: say so, count it, go on
            log.error("checkpoint into %s failed (%s); training goes on without it", self.folder, exc)
            self.stats.metrics.checkpoint_failures.inc()
            self.reporter.event("checkpoint_failed", round=after, error=str(exc))
            return "", after
        self.written = self.replica.round
        self.stats.checkpointed(str(path), after)
        return str(path), after
