"""Bytes on the wire, per peer, per message kind and direction, as written to and read from libp2p streams
(payloads plus our 4-byte framing; libp2p's own encryption and multiplexing add a little on top), how many of them
went through a relay (a /p2p-circuit connection: another peer carried them), and the streams the transport refused
before any handler saw them (by reason)."""

from __future__ import annotations

import threading
from collections import defaultdict


class Accounting:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[tuple[str, str, str], int] = defaultdict(int)  # (peer, kind, "sent"/"received")
        self._messages: dict[tuple[str, str, str], int] = defaultdict(int)
        self._refused: dict[str, int] = defaultdict(int)
        self._relayed: dict[str, int] = {"sent": 0, "received": 0}

    def add(self, peer: str, kind: str, direction: str, nbytes: int, relayed: bool = False) -> None:
        with self._lock:
            self._bytes[(peer, kind, direction)] += nbytes
            self._messages[(peer, kind, direction)] += 1
            if relayed:
                self._relayed[direction] += nbytes

    def relayed(self) -> dict[str, int]:
        """Bytes sent and received over relayed connections."""
        with self._lock:
            return dict(self._relayed)

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._bytes)

    def totals(self) -> dict[str, int]:
        """Bytes sent and received over all peers and kinds."""
        out = {"sent": 0, "received": 0}
        for (_, _, direction), n in self.snapshot().items():
            out[direction] += n
        return out

    def refuse(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] += 1

    def refusals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._refused)
