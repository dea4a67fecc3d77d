"""A node's checkpoint read back for export: a ckpt-*.pt file, or the newest good one of a checkpoint folder,
checked to be one (parameters that match their digest, a run config with a model spec) before it is used.

The node layer writes checkpoints (demo_node.node.checkpoint); the models layer may not import it, so the file
names and the digest's formula (demo_node.node.digest) are restated here, and the tests export checkpoints that
the node layer wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from demo_node.models.spec import build_model, check_spec

_NAME = re.compile(r"^ckpt-(\d+)(-m)?\.pt$")
_DIGEST_BYTES = 16


class NotACheckpoint(ValueError):
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
    found = sorted((p for p in folder.iterdir() if _NAME.match(p.name)),
                   key=lambda p: (int(_NAME.match(p.name).group(1)), p.name))
    if not found:
        raise NotACheckpoint(f"{folder}: a folder without checkpoints (ckpt-<round>.pt files)")
    reasons = []
    for path in reversed(found):
        try:
            return _load(path)
        except NotACheckpoint as exc:  # a torn or corrupt file: the one before may be good
            reasons.append(str(exc))
    raise NotACheckpoint(f"{folder}: no usable checkpoint; " + "; ".join(reasons))


def _load(path: Path) -> dict[str, Any]:
    try:
        # tensors and plain data only: loading a checkpoint never runs code from it
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on other files (KeyError on a text file, say)
        raise NotACheckpoint(f"{path} is not a checkpoint of a node (torch.load: {str(exc).splitlines()[0]})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("params"), list):
        raise NotACheckpoint(f"{path} is not a checkpoint of a node: it holds no \"params\" list")
    if not all(isinstance(t, torch.Tensor) for t in state["params"]):
        raise NotACheckpoint(f"{path}: its \"params\" are not all tensors")
    if "digest" in state and _digest(state["params"]) != state["digest"]:
        raise NotACheckpoint(f"{path}: its parameters do not match the digest stored with them (a corrupt file)")
    try:
        run = json.loads(state.get("run_config") or "")
        check_spec(run["model"])
    except (ValueError, TypeError, KeyError) as exc:
        raise NotACheckpoint(f"{path}: its run config has no model spec (section \"model\"): {exc}") from exc
    state["spec"], state["path"] = run["model"], str(path)
    return state


def _digest(tensors: list[torch.Tensor]) -> str:
    """demo_node.node.digest's: SHA-256 over each tensor's shape, dtype and bytes, truncated to 16 bytes, in hex."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(memoryview(t.detach().contiguous().view(-1).view(torch.uint8).numpy()))
    return h.digest()[:_DIGEST_BYTES].hex()


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
