"""Where the nodes running on this machine can be found: each writes one small file while it runs (its control
address, pid, peer id, run and folders), so ``demo-node status`` finds a node by its peer id or its folder, or the
only one running, without the user knowing which port it took.

The files live in ``$XDG_RUNTIME_DIR/demo-node`` (or ``~/.cache/demo-node/nodes``), readable by their owner only; a
file whose process is gone is ignored (and removed when seen).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class NodeEntry:
    control: str
    pid: int
    peer_id: str
    run_id: str
    folders: list[str]
    """The node's checkpoint folder and identity file's folder (absolute), where it has them."""


def folder() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "demo-node" if base else Path.home() / ".cache" / "demo-node" / "nodes"


def register(entry: NodeEntry) -> Path:
    where = folder()
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = where / f"{entry.peer_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(entry)))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> list[NodeEntry]:
    """The nodes of this user that are running on this machine."""
    out = []
    for path in sorted(folder().glob("*.json")) if folder().is_dir() else []:
        try:
            entry = NodeEntry(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(entry.pid):
            out.append(entry)
        else:
            path.unlink(missing_ok=True)
    return out


def find(peer: str = "", directory: str = "") -> list[NodeEntry]:
    """The running nodes whose peer id starts or ends with ``peer`` and whose folders hold ``directory`` (either
    may be empty)."""
    wanted = str(Path(directory).resolve()) if directory else ""
    return [e for e in running()
            if (not peer or e.peer_id.startswith(peer) or e.peer_id.endswith(peer))
            and (not wanted or any(wanted == f or wanted.startswith(f + os.sep) or f.startswith(wanted + os.sep)
                                   for f in e.folders))]
