"""A node's checkpoint read back for export: a ckpt-*.pt file, or the newest good one of a checkpoint folder,
checked to be one (:func:`demo_node.checkpoint_files.read`: parameters that match their digest) with a model spec in its
run config before it is used."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from demo_node.checkpoint_files import checkpoints, read
from demo_node.errors import DemoNodeError
from demo_node.models.spec import build_model, check_spec


class NotACheckpoint(DemoNodeError, ValueError):
    """A file or folder that holds no usable checkpoint of a node (the message says what is wrong)."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path`` (a file, or a folder's newest good one), with "spec" and "path" added."""
    path = Path(path)
    if path.is_dir():
        return _newest_good(path)
    if not path.is_file():
        raise NotACheckpoint(f"{path}: no such file or folder")
    return _load(path)


def _newest_good(folder: Path) -> dict[str, Any]:
    found = checkpoints(folder)
    if not found:
        raise NotACheckpoint(f"{folder}: a folder without checkpoints (ckpt-<round>.pt files)")
    reasons = []
    for path in reversed(found):
        try:
            state = _load(path)
        except NotACheckpoint as exc:  # a torn or corrupt file: the one before may be good
            reasons.append(str(exc))
            continue
        state["passed_over"] = reasons  # newer files that did not load: the caller says so
        return state
    raise NotACheckpoint(f"{folder}: no usable checkpoint; " + "; ".join(reasons))


def _load(path: Path) -> dict[str, Any]:
    try:
        state = read(path)
    except ValueError as exc:
        raise NotACheckpoint(str(exc)) from exc
    try:
        run = json.loads(state.get("run_config") or "")
        check_spec(run["model"])
    except (ValueError, TypeError, KeyError) as exc:
        raise NotACheckpoint(f"{path}: its run config has no model spec (section \"model\"): {exc}") from exc
    state["spec"] = run["model"]
    return state


def model_of(state: dict[str, Any]) -> nn.Module:
    """The node's model (models.spec) with a loaded checkpoint's parameters, in eval mode."""
    spec, params, where = state["spec"], state["params"], state.get("path", "the checkpoint")
    model = build_model(spec)
    dtypes = {t.dtype for t in params}
    if len(dtypes) == 1:
        model.to(dtypes.pop())  # keep a bf16 run's weights in bf16
    named = list(model.named_parameters())
    if len(named) != len(params):
        raise NotACheckpoint(f"{where} holds {len(params)} tensors but its model spec makes {len(named)} parameters")
    with torch.no_grad():
        for i, ((name, p), saved) in enumerate(zip(named, params)):
            if p.shape != saved.shape:
                raise NotACheckpoint(f"{where}: parameter {i} ({name}) has shape {tuple(saved.shape)} there, "
                                     f"{tuple(p.shape)} in the model of its spec")
            p.copy_(saved)
    return model.eval()
