"""Checkpoints written atomically (temporary file, fsync, rename, fsync of the folder), the newest good one found
on start. A checkpoint holds the parameters, the optimizer's ``state_dict()`` (momentum, round, run identity) and
what the program adds (a data stream's position, say); it is good when it loads and its parameters match the digest
stored with them."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from demo_node.node.digest import digest

log = logging.getLogger(__name__)
KEEP = 2
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def save(folder: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (with "round" and "params", a list of tensors) as ckpt-<round>.pt; keep the newest few."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(state, digest=digest(state["params"]).hex())
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        final = folder / f"ckpt-{int(state['round']):08d}.pt"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in sorted(checkpoints(folder))[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


def checkpoints(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def load_latest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The newest checkpoint that loads and matches its digest; older ones are tried when a newer one is bad."""
    for path in reversed(checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if digest(state["params"]).hex() != state["digest"]:
                raise ValueError("parameters do not match the stored digest")
            state["path"] = str(path)
            return state
        except Exception as exc:  # a torn or corrupt file: fall back to the previous one
            log.warning("checkpoint %s is not usable (%s); trying an older one", path, exc)
    return None
