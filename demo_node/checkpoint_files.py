"""Checkpoints written atomically (temporary file, fsync, rename, fsync of the folder), and the newest good one found
on start.

A checkpoint holds the parameters, the optimizer's ``state_dict()`` (momentum, round, run identity) and what the
program adds (a data stream's position, say); it is good when it loads and its parameters hash to the digest stored
with it, else the one before is tried. The newest ``keep`` are kept, plus the newest one taken while this node's
digest agreed with the swarm's (marked ``-m`` in its name), so a node that drifted can always go back to a state
the swarm vouched for. Temporary files of interrupted writes are removed on start. Rounds of any size are fine.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from demo_node.core.digest import digest

log = logging.getLogger(__name__)
KEEP = 3
_NAME = re.compile(r"^ckpt-(\d+)(-m)?\.pt$")
_TEMP = re.compile(r"^\.ckpt-.*\.tmp$")


def _round_of(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def save(folder: str | os.PathLike, state: dict[str, Any], matched: bool = False, keep: int = KEEP) -> Path:
    """Write ``state`` (with "round" and "params", a list of tensors) as ckpt-<round>[-m].pt; keep the newest
    ``keep`` and the newest matched one. OSError (disk full, not writable) leaves what was there untouched."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(state, digest=digest(state["params"]).hex())
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        final = folder / f"ckpt-{int(state['round']):08d}{'-m' if matched else ''}.pt"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    prune(folder, keep)
    return final


def checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints in ``folder``, oldest first (by round, then unmatched before matched)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME.match(p.name)), key=lambda p: (_round_of(p), p.name))


def prune(folder: str | os.PathLike, keep: int = KEEP) -> None:
    every = checkpoints(folder)
    keepers = set(every[-keep:])
    matched = [p for p in every if p.name.endswith("-m.pt")]
    if matched:
        keepers.add(matched[-1])
    for old in every:
        if old not in keepers:
            old.unlink(missing_ok=True)


def clean(folder: str | os.PathLike) -> int:
    """Remove the temporary files of writes that a crash interrupted; how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if _TEMP.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def read(path: str | os.PathLike) -> dict[str, Any]:
    """One checkpoint file, checked: tensors and plain data only (loading never runs code from the file), a
    "params" list of tensors that hashes to the stored digest; ValueError says what is wrong."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on other files (KeyError on a text file, say)
        # not torch's own message: for a file that holds more than tensors it advises loading it with code
        # execution on (weights_only=False), which a node must never do with a file it did not write itself
        raise ValueError(f"{path} is not a checkpoint of demo-node (torch cannot read it as tensors and plain data: "
                         f"{type(exc).__name__})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("params"), list):
        raise ValueError(f"{path} is not a checkpoint: it holds no \"params\" list")
    if not all(isinstance(t, torch.Tensor) for t in state["params"]):
        raise ValueError(f"{path}: its \"params\" are not all tensors")
    if digest(state["params"]).hex() != state.get("digest"):
        raise ValueError(f"{path}: its parameters do not match the digest stored with them (a torn or corrupt file)")
    state["path"] = str(path)
    return state


def load_latest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The newest checkpoint that loads and matches its digest; older ones are tried when a newer one is bad."""
    for path in reversed(checkpoints(folder)):
        try:
            return read(path)
        except ValueError as exc:  # a torn or corrupt file: fall back to the previous one
            log.warning("checkpoint %s is not usable (%s); trying an older one", path, exc)
    return None
