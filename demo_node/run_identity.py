"""A run's identity: its name plus a hash of the config that defines it (model, data, optimizer, schedule)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from demo_node.errors import DemoNodeError

RunConfig = Mapping[str, Mapping[str, Any]]


class ConfigMismatch(DemoNodeError, ValueError):
    """This node's run config differs from the swarm's; the message names every differing field."""

    def __init__(self, differences: list[tuple[str, Any, Any]]):
        self.differences = differences
        parts = [f"{name}: this node has {mine!r}, the run has {theirs!r}" for name, mine, theirs in differences]
        super().__init__("run config differs from the swarm's: " + "; ".join(parts))


def canonical(run: RunConfig) -> str:
    return json.dumps({s: dict(v) for s, v in run.items()}, sort_keys=True, separators=(",", ":"))


def config_hash(run: RunConfig) -> str:
    """Hash of everything but the run's name (two runs may share a config)."""
    body = {s: {k: v for k, v in items.items() if k != "run_name"} for s, items in run.items()}
    return hashlib.sha256(canonical(body).encode()).hexdigest()[:12]


def run_id(run: RunConfig) -> str:
    return f"{run['run']['run_name']}-{config_hash(run)}"


def differences(mine: RunConfig, theirs: RunConfig) -> list[tuple[str, Any, Any]]:
    """(section.field, mine, theirs) for every field that differs; nested tables (a model's config) are compared
    key by key, so the name is the field's own (``model.config.hidden_size``)."""
    out: list[tuple[str, Any, Any]] = []
    _compare("", mine, theirs, out)
    return out


def _compare(prefix: str, a: Any, b: Any, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            _compare(f"{prefix}.{key}" if prefix else str(key), a.get(key), b.get(key), out)
    elif a != b:
        out.append((prefix, a, b))


def check_same(mine: RunConfig, theirs: RunConfig) -> None:
    diff = differences(mine, theirs)
    if diff:
        raise ConfigMismatch(diff)
