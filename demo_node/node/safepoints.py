"""Requests from other threads (the control API, signal handlers) that the training thread serves at its next safe
point, between rounds: write a checkpoint now, and leave."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Callable


class SafePoints:
    def __init__(self) -> None:
        self._checkpoints: "queue.Queue[concurrent.futures.Future]" = queue.Queue()
        self._leave = threading.Event()

    # -- from any thread -----------------------------------------------------------------------------------------
    def request_checkpoint(self, timeout: float) -> tuple[str, int]:
        """Block until the training thread has checkpointed; (path, round). TimeoutError if it reaches no safe
        point in time."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._checkpoints.put(fut)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError("no safe point within the timeout") from None

    def request_leave(self) -> None:
        """Ask the training loop to leave (safe from a signal handler: it only sets a flag)."""
        self._leave.set()

    @property
    def leave_requested(self) -> bool:
        return self._leave.is_set()

    # -- the training thread ---------------------------------------------------------------------------------------
    def serve(self, checkpoint: Callable[[], tuple[str, int]]) -> None:
        """Answer the checkpoint requests waiting now."""
        while True:
            try:
                fut = self._checkpoints.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue  # its caller gave up
            try:
                fut.set_result(checkpoint())
            except Exception as exc:
                fut.set_exception(exc)
