"""Child processes that print JSON event lines (``demo-node join``, the benchmarks' workers): the lines read by a
thread, and stopping the child (and its p2pd daemon) by pid. Shared by ``demo-node swarm``, the benchmarks and the
tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence


def join_command(args: Sequence[str]) -> list[str]:
    """The command line of a ``demo-node join`` child with these options (JSON event lines on stdout)."""
    return [sys.executable, "-m", "demo_node", "join", "--log-format", "json", *args]


class NodeProcess:
    """A running child that prints one JSON object with an "event" key per line (a ``started`` event may name its
    ``p2pd_pid``). Its stdout is kept in memory and in ``events.jsonl``, its stderr in ``stderr.log``, both in
    ``folder``."""

    def __init__(self, command: Sequence[str], folder: Path, *, prefix: Sequence[str] = (), env: dict | None = None,
                 name: str = "node", on_event: Callable[["NodeProcess", dict], None] | None = None,
                 cwd: str | Path | None = None):
        self.folder, self.name, self.on_event = folder, name, on_event
        folder.mkdir(parents=True, exist_ok=True)
        self.events: list[dict] = []
        self.p2pd_pids: list[int] = []
        self._lock = threading.Lock()
        self._asked_to_leave = False
        self.stderr = open(folder / "stderr.log", "ab")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        # a session of its own: a Ctrl+C meant for the parent does not reach the child, which is stopped by pid
        self.proc = subprocess.Popen([*prefix, *command], stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     bufsize=1, env=full_env, start_new_session=True, cwd=cwd)
        self._reader = threading.Thread(target=self._read, name=f"events-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.folder / "events.jsonl", "a") as keep:
            for line in self.proc.stdout:
                keep.write(line)
                keep.flush()
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(ev, dict) or "event" not in ev:
                    continue
                with self._lock:
                    self.events.append(ev)
                    if ev["event"] == "started" and ev.get("p2pd_pid"):
                        self.p2pd_pids.append(ev["p2pd_pid"])
                if self.on_event is not None:
                    self.on_event(self, ev)

    # -- reading events ----------------------------------------------------------------------------------------
    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def rounds(self, member_only: bool = True) -> list[dict]:
        return [e for e in self.of("round") if e["member"] or not member_only]

    def last_round(self) -> int:
        r = self.rounds()
        return r[-1]["round"] if r else -1

    def last_round_event(self) -> dict:
        r = self.of("round")
        return r[-1] if r else {}

    def digest_at(self, round: int) -> str | None:
        for e in self.of("round"):
            if e["round"] == round:
                return e["digest"]
        return None

    @property
    def maddrs(self) -> list[str]:
        started = self.of("started")
        return started[-1]["maddrs"] if started else []

    @property
    def peer(self) -> str:
        started = self.of("started")
        return started[-1]["peer"] if started else ""

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``predicate()`` holds; AssertionError (with the node's last stderr lines) on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)  # let the reader catch the last lines
                if predicate():
                    return
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before: {what}\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {self.name}: {what}\n{self.tail()}")

    def wait_started(self, timeout: float = 90) -> "NodeProcess":
        self.wait(lambda: bool(self.maddrs), timeout, "started")
        return self

    def wait_round(self, round: int, timeout: float = 120) -> None:
        self.wait(lambda: self.last_round() >= round, timeout, f"round {round}")

    def tail(self, n: int = 30) -> str:
        self.stderr.flush()
        try:
            lines = (self.folder / "stderr.log").read_text(errors="replace").splitlines()[-n:]
        except OSError:
            lines = []
        return "\n".join(lines)

    # -- stopping, by pid --------------------------------------------------------------------------------------
    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def ask_to_leave(self) -> None:
        """SIGTERM once (a second one would force the node out without its graceful leave)."""
        if not self._asked_to_leave:
            self._asked_to_leave = True
            self.signal(signal.SIGTERM)

    def kill9(self) -> None:
        """SIGKILL the node and its p2pd, as a crash would: no chance to clean up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._kill_daemons()

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM (a graceful leave), wait up to ``timeout``, then SIGKILL; its p2pd is killed either way."""
        self.ask_to_leave()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._kill_daemons()

    def _kill_daemons(self) -> None:
        for pid in self.p2pd_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Kill whatever is left of it and release its files."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._kill_daemons()
        self._reader.join(timeout=5)
        self.stderr.close()


def stop_all(nodes: Sequence[NodeProcess], grace: float = 60.0) -> dict[str, int]:
    """SIGTERM every node at once, give them ``grace`` seconds together to leave, then kill what is left; exit codes."""
    for n in nodes:
        n.ask_to_leave()
    deadline = time.monotonic() + grace
    return {n.name: n.terminate(timeout=max(0.1, deadline - time.monotonic())) for n in nodes}
