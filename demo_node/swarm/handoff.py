"""Where the training side hands this node's contribution to the round loop, and how long a round waits for it.

The loop never waits for the training side longer than the swarm does: if the contribution is not ready when the
other members' contributions have started to arrive at this node's shard (plus a grace), the round goes on without
one and the contribution goes into a later round. A node that owns no shard does not see the others arrive: it waits
as long as its contribution usually takes, twice over. While the training side downloads the swarm's state no
contribution will come, and while it only follows rounds (a founder waiting for peers) a round waits for one briefly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from demo_node.core.contribution import Contribution
from demo_node.limits import Limits
from demo_node.swarm.owner import OwnerRound


@dataclass
class Handoff:
    contribution: Contribution
    taken: threading.Event = field(default_factory=threading.Event)
    """Set once a round has taken the contribution (from then on it cannot be withdrawn)."""


class ContributionSlot:
    """Holds at most one handed-over contribution; every method but the ``*_threadsafe`` ones runs on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits):
        self.loop, self.limits = loop, limits
        self.handoff: Handoff | None = None
        self.event = asyncio.Event()
        """Set when something the waiting round should look at changed (a contribution, a leave, a jump)."""
        self.downloading = False
        self.idle = False
        self._ready_after: list[float] = []
        """Seconds from a round's opening to this node's contribution, in the recent rounds it contributed to."""

    # -- from the training side (any thread) ---------------------------------------------------------------------
    def hand_over(self, contribution: Contribution) -> Handoff:
        handoff = Handoff(contribution)
        self.loop.call_soon_threadsafe(self._put, handoff)
        return handoff

    def _put(self, handoff: Handoff) -> None:
        self.handoff = handoff
        self.event.set()

    async def take_back(self, handoff: Handoff) -> bool:
        """Withdraw ``handoff`` if no round took it yet (on the loop)."""
        if self.handoff is handoff and not handoff.taken.is_set():
            self.handoff = None
            return True
        return False

    def set_threadsafe(self, **flags: bool) -> None:
        """Set ``downloading`` or ``idle`` from the training side, waking a round that waits."""
        def apply() -> None:
            for name, value in flags.items():
                setattr(self, name, value)
            self.event.set()

        self.loop.call_soon_threadsafe(apply)

    # -- from the round loop -------------------------------------------------------------------------------------
    async def wait(self, opened: float, own: OwnerRound | None, deadline: float, gone: callable) -> Handoff | None:
        """The contribution for the round that opened at ``opened``, or None if it is not ready in time; ``own``:
        this node's shard of the round (None if it owns none); ``gone()``: the round must not wait at all (a leave,
        a stop, not a member)."""
        lim = self.limits
        while True:
            if self.handoff is not None and not self.handoff.taken.is_set():
                handoff, self.handoff = self.handoff, None
                self.event.clear()
                self._ready_after = (self._ready_after + [time.monotonic() - opened])[-lim.adaptive_window:]
                return handoff
            if gone() or self.downloading:
                return None
            now = time.monotonic()
            limit = opened + (lim.idle_round if self.idle else deadline * lim.own_wait_share)
            if own is not None and own.first_foreign is not None:
                # the others are ready: wait a little more than it took them, then go on without
                lead = own.first_foreign - opened
                limit = min(limit, own.first_foreign + lim.straggler_grace + lim.straggler_grace_share * lead)
            elif own is None and len(self._ready_after) >= 3:
                # a node that owns no shard does not see the others' contributions arrive: it waits for its own as
                # long as it usually takes, twice over, so a training side that stalls (a hung GPU) does not hold
                # every owner to half a deadline
                usual = sorted(self._ready_after)[len(self._ready_after) // 2]
                limit = min(limit, opened + lim.straggler_grace + 2 * usual)
            if now >= limit:
                return None
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), timeout=min(0.05, limit - now))
            except asyncio.TimeoutError:
                pass
