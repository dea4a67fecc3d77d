"""What the round protocol counts for the operator (refused payloads by reason, late arrivals), kept here and read
by whoever reports it: the protocol calls nothing above it."""

from __future__ import annotations

import threading
from collections import Counter


class SwarmCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: Counter[str] = Counter()
        self._late = 0

    def refused(self, reason: str) -> None:
        """A payload or request refused, by its refusal name (see :mod:`demo_node.wire.errors`)."""
        with self._lock:
            self._refused[reason] += 1

    def late(self) -> None:
        """A peer's contribution that reached one of this node's shards after it closed."""
        with self._lock:
            self._late += 1

    def refusals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._refused)

    def late_arrivals(self) -> int:
        with self._lock:
            return self._late
