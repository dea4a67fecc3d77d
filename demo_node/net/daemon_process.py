"""How this node's p2pd child is started: in a session of its own, and dying with this process.

hivemind starts p2pd in the node's own process group, so a signal sent to the whole group (what ``timeout``,
a terminal's Ctrl+C and many supervisors send) reaches the daemon at the same moment as the node: the daemon is gone
before the node can finish its round and tell its peers it leaves. In a session of its own the daemon gets no
group-wide signal; the node stops it when it is done, and the kernel sends it SIGTERM should the node die without
doing so (``PR_SET_PDEATHSIG``: a ``kill -9`` of the node, an out-of-memory kill), so no daemon outlives its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import threading
from typing import Iterator

PR_SET_PDEATHSIG = 1
_LOCK = threading.Lock()


def _detach() -> None:
    """Run in the child between fork and exec."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the session alone still keeps group signals away
        pass


@contextlib.contextmanager
def detached_daemon() -> Iterator[None]:
    """While it is entered, subprocesses started with asyncio (hivemind's p2pd) start detached (see above)."""
    with _LOCK:
        original = asyncio.subprocess.create_subprocess_exec

        async def create(*args, **kwargs):
            kwargs.setdefault("preexec_fn", _detach)
            return await original(*args, **kwargs)

        asyncio.subprocess.create_subprocess_exec = create
        try:
            yield
        finally:
            asyncio.subprocess.create_subprocess_exec = original
