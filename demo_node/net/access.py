"""Who may talk to this node in a permissioned run: the allowlist and the swarm key, read from their files."""

from __future__ import annotations

import logging
import os
import stat

from hivemind.p2p import PeerID

from demo_node.errors import DemoNodeError

log = logging.getLogger(__name__)
MIN_KEY_BYTES = 16


class AccessError(DemoNodeError, ValueError):
    """An allowlist or swarm key file that cannot be used; the message names the file (and line)."""


def load_allowlist(path: str) -> set[bytes] | None:
    """The peer ids listed in ``path`` (None for an empty path: anyone may talk to this node)."""
    if not path:
        return None
    try:
        lines = open(path).read().splitlines()
    except OSError as exc:
        raise AccessError(f"allowlist {path}: {exc.strerror}") from None
    peers = set()
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            peers.add(PeerID.from_base58(text).to_bytes())
        except Exception:
            raise AccessError(f"allowlist {path}, line {n}: {text[:60]!r} is not a peer id") from None
    if not peers:
        raise AccessError(f"allowlist {path} lists no peer id")
    return peers


def load_swarm_key(path: str) -> bytes:
    """The secret in ``path`` (b"" for an empty path: no swarm key)."""
    if not path:
        return b""
    try:
        key = open(path, "rb").read().strip()
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise AccessError(f"swarm key {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise AccessError(f"swarm key {path}: {len(key)} bytes, at least {MIN_KEY_BYTES} wanted")
    if mode & 0o077:
        log.warning("swarm key %s can be read by others (mode %o): chmod 600 it", path, mode)
    return key
