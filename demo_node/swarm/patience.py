"""How long a node waits for the peers that have not answered yet: as long as the others took, plus a grace.

A round asks several peers the same kind of thing at once (every owner for its shard's result, every verifier for
its verdict, every member for a result it could not get). Once half of them answered, the rest get a grace and as
long again as those took; then the node goes on without them. So a dead, hung or hostile peer that holds its
stream open costs the round one short wait that scales with how long the healthy peers take (a slow link or a large
model waits longer, a fast swarm less), never a fixed multiple of the deadline.
"""

from __future__ import annotations

import asyncio
import math
from typing import Awaitable, TypeVar

T = TypeVar("T")


class Patience:
    def __init__(self, expected: int, grace: float, share: float, since: float | None = None):
        """``expected``: how many answers the round waits for; ``since``: when the asking began (loop time, default
        now); the grace for the rest is ``grace + share *`` the time half of them took."""
        loop = asyncio.get_running_loop()
        self.expected, self.grace, self.share = expected, grace, share
        self.since = loop.time() if since is None else since
        self.answered = 0
        self.cutoff: float | None = None
        """Loop time after which the rest are not waited for (None until half answered)."""
        self._known = asyncio.Event()
        if expected <= 0:
            self._set(self.since)

    def answer(self) -> None:
        """One of the expected peers answered (or failed at once, which tells as much)."""
        self.answered += 1
        if self.cutoff is None and self.answered >= math.ceil(self.expected / 2):
            self._set(asyncio.get_running_loop().time())

    def _set(self, now: float) -> None:
        self.cutoff = now + self.grace + self.share * (now - self.since)
        self._known.set()

    async def within(self, aw: Awaitable[T], cap: float) -> T:
        """``aw``'s result, unless it takes longer than ``cap`` seconds or than the cutoff once there is one:
        asyncio.TimeoutError then (``aw`` is cancelled)."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(aw)
        end = loop.time() + cap
        known = asyncio.ensure_future(self._known.wait())
        try:
            while True:
                limit = end if self.cutoff is None else min(end, self.cutoff)
                timeout = limit - loop.time()
                if timeout <= 0:
                    raise asyncio.TimeoutError()
                waiting = {task} if known.done() else {task, known}
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    return task.result()
        finally:
            known.cancel()
            if not task.done():
                task.cancel()
            # nobody awaits it any more: a stream reset that ends it after the cancel (or as the wait timed out)
            # must not surface as "Task exception was never retrieved"
            task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()
