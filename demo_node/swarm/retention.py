"""Which rounds a node keeps, and which rounds its peers may speak of.

A node keeps the rounds it closed for peers that catch up or fetch late: at least ``Limits.keep_rounds``, more while
they opened within ``Limits.keep_seconds`` (a joiner on a slow link follows the rounds from the one its state
download began at), within a byte budget estimated from the model's size.
"""

from __future__ import annotations

import time

from demo_node.limits import Limits


class Retention:
    def __init__(self, limits: Limits, num_params: int, payload_bytes: int):
        self.limits = limits
        self.sign_bytes = num_params // 8
        self.payload_bytes = payload_bytes
        self.opened_at: dict[int, float] = {}
        """Round -> when it opened here."""
        self.keep = limits.keep_rounds
        """Rounds kept back from the current one."""

    def opened(self, r: int) -> float:
        now = self.opened_at[r] = time.monotonic()
        return now

    def oldest_kept(self, r: int, members: int) -> int:
        """After round ``r`` (of ``members`` members): the oldest round to keep (everything before it goes)."""
        lim = self.limits
        now = time.monotonic()
        recent = sum(now - t < lim.keep_seconds for t in self.opened_at.values())
        # a round's results: the signs of every parameter, or in relay every member's payload, and the owners' bodies
        round_bytes = max(self.sign_bytes, members * self.payload_bytes) + 65536
        self.keep = max(lim.keep_rounds, min(lim.keep_rounds_max, recent, lim.keep_bytes // round_bytes))
        old = r - self.keep
        for k in [k for k in self.opened_at if k < old]:
            del self.opened_at[k]
        return old

    def in_window(self, current: int, r: int) -> bool:
        """Rounds a peer may speak of: the few ahead this node may not have opened yet, and those it still keeps."""
        return current - self.keep <= r <= current + self.limits.rounds_ahead
