"""Settling a starting node's run config against the runs its peers announce, before it builds a model: a node
that set no run options adopts the run's (model, data, optimizer, schedule), one that set some must match it."""

from __future__ import annotations

from typing import Any, Mapping

from demo_node import JoinError
from demo_node.daemon.settings import RUN_SECTIONS, Config
from demo_node.run_identity import check_same


def _sections(run: Mapping[str, Any]) -> dict[str, Any]:
    """The sections this program defines (the swarm optimizer adds and checks the parameters' shapes itself)."""
    return {s: run.get(s, {}) for s in RUN_SECTIONS}


def adopt_run(cfg: Config, runs: Mapping[str, Mapping[str, Any]]) -> Config:
    """This node's config, given the runs known (run id -> config): with --run-id, that run's; otherwise the run of
    the same name. A node that set run options must match it (ConfigMismatch names every differing field); one
    that set none adopts it; with no such run, this node's config founds one (or, with --run-id, the swarm
    optimizer says the run is not announced)."""
    mine = cfg.run_config()
    if cfg.run.run_id:
        theirs = runs.get(cfg.run.run_id)
        if theirs is None:
            return cfg
        if cfg.run_explicit():
            check_same(mine, _sections(theirs))
            return cfg
        return cfg.with_run_config(_sections(theirs))
    same_name = {rid: c for rid, c in runs.items()
                 if isinstance(c.get("run"), dict) and c["run"].get("run_name") == cfg.run.run_name}
    if not same_name or any(_sections(c) == mine for c in same_name.values()):
        return cfg
    if cfg.run_explicit():
        check_same(mine, _sections(sorted(same_name.items())[0][1]))  # raises, naming the differing fields
    if len(same_name) > 1:
        raise JoinError(f"several runs are named {cfg.run.run_name!r}: {sorted(same_name)}; choose one with --run-id")
    return cfg.with_run_config(_sections(next(iter(same_name.values()))))
