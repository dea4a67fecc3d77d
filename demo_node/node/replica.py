"""This node's replica of the model's parameters as the swarm knows it: the round it is at, its digest, snapshots
for peers that join, and the installation of a downloaded one.

The training thread writes the parameters (applying a round, installing a download) while holding the lock; the
network side takes snapshots under the same lock, so a joiner never waits for the training loop to reach a safe
point, and all requesters of one round share one snapshot.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from demo_node.core.digest import digest
from demo_node.errors import DemoNodeError


@dataclass(frozen=True)
class ParameterSnapshot:
    round: int
    """The first round whose update is not in these parameters."""
    digest: bytes
    tensors: list[bytes]
    """Raw little-endian bytes of every parameter, in order."""


class InstallError(DemoNodeError, ValueError):
    """A downloaded snapshot that does not fit these parameters or does not match its digest."""


class Replica:
    def __init__(self, params: Sequence[torch.Tensor]):
        self.params = list(params)
        self.round = 0
        """Rounds applied so far: the parameters are the state after round ``round - 1``."""
        self._cond = threading.Condition()
        self._digest: tuple[int, bytes] | None = None
        self._snapshot: ParameterSnapshot | None = None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold while changing the parameters; the digest and snapshot are recomputed afterwards."""
        with self._cond:
            yield
            self._digest = None
            self._snapshot = None
            self._cond.notify_all()

    def advance(self, round: int) -> None:
        """The parameters are now the state after round ``round - 1``."""
        with self._cond:
            self.round = round
            self._digest = None
            self._snapshot = None
            self._cond.notify_all()

    def digest(self) -> bytes:
        with self._cond:
            if self._digest is None or self._digest[0] != self.round:
                self._digest = (self.round, digest(self.params))
            return self._digest[1]

    def sizes(self) -> list[int]:
        return [p.numel() * p.element_size() for p in self.params]

    def snapshot(self, min_round: int, wait: float) -> ParameterSnapshot | None:
        """The parameters once they are at ``min_round`` or later (waiting up to ``wait`` seconds), or None. One
        copy per round, shared by every requester."""
        deadline = time.monotonic() + wait
        with self._cond:
            while self.round < min_round:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._snapshot is None or self._snapshot.round != self.round:
                blobs = [p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes() for p in self.params]
                self._snapshot = ParameterSnapshot(self.round, self.digest(), blobs)
            return self._snapshot

    @torch.no_grad()
    def install(self, blobs: Sequence[bytes], expected_digest: bytes, round: int) -> None:
        """Replace the parameters with a snapshot's bytes if they fit and hash to ``expected_digest``; otherwise
        raise InstallError and leave them untouched (the bytes are checked in a staging copy first)."""
        if len(blobs) != len(self.params):
            raise InstallError(f"snapshot has {len(blobs)} tensors, this model {len(self.params)}")
        staged = []
        for i, (p, blob) in enumerate(zip(self.params, blobs)):
            size = p.numel() * p.element_size()
            if len(blob) != size:
                raise InstallError(f"snapshot tensor {i}: {len(blob)} bytes, this model's has {size}")
            staged.append(torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(p.dtype).view(p.shape))
        if digest(staged) != expected_digest:
            raise InstallError("the parameters do not match their digest")
        with self.writing():
            for p, t in zip(self.params, staged):
                p.copy_(t.to(p.device))
            self.round = round
