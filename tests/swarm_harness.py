"""Node processes for swarm tests: real ``demo-node join`` processes with real p2pd daemons on 127.0.0.1.

Each node's JSON event lines are collected by a reader thread; tests wait on conditions over them with generous
deadlines. Every process a test starts (the node and its p2pd) is stopped by pid at the end, and the daemons'
leftover unix sockets are removed.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

NODE_ARGS = ["--batch-size", "4", "--deadline", "6", "--eval-every", "5", "--listen", "/ip4/127.0.0.1/tcp/0",
             "--threads", "1", "--control", "127.0.0.1:0"]
"""This node's own options."""
RUN_ARGS = ["--model", "tiny", "--warmup-rounds", "5", "--lr", "3e-3"]
"""Options that define the run (hashed into its id)."""


class NodeProc:
    def __init__(self, folder: Path, peers: list[str] = (), args: list[str] = (), env: dict | None = None,
                 prefix: list[str] = (), name: str = "node", run_args: list[str] = RUN_ARGS):
        self.folder, self.name = folder, name
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [*prefix, sys.executable, "-m", "demo_node", "join", "--log-format", "json",
               "--identity", str(folder / "identity.key"), "--checkpoint-dir", str(folder / "ckpt"),
               *NODE_ARGS, *run_args, *args]
        if peers:
            cmd += ["--peers", *peers]
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.stderr = open(folder / "stderr.log", "ab")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=full_env)
        self.p2pd_pids: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.folder / "events.jsonl", "a") as keep:
            for line in self.proc.stdout:
                keep.write(line)
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                with self._lock:
                    self.events.append(ev)
                    if ev["event"] == "started" and ev.get("p2pd_pid"):
                        self.p2pd_pids.append(ev["p2pd_pid"])

    # -- reading events ----------------------------------------------------------------------------------------
    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def rounds(self, member_only: bool = True) -> list[dict]:
        return [e for e in self.of("round") if e["member"] or not member_only]

    def last_round(self) -> int:
        r = self.rounds()
        return r[-1]["round"] if r else -1

    def digest_at(self, round: int) -> str | None:
        for e in self.of("round"):
            if e["round"] == round:
                return e["digest"]
        return None

    @property
    def maddrs(self) -> list[str]:
        started = self.of("started")
        return started[0]["maddrs"] if started else []

    @property
    def peer(self) -> str:
        started = self.of("started")
        return started[0]["peer"] if started else ""

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                time.sleep(0.5)  # let the reader catch the last lines
                if predicate():
                    return
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before: {what}\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {self.name}: {what}\n{self.tail()}")

    def wait_started(self, timeout: float = 90) -> "NodeProc":
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

    # -- stopping ----------------------------------------------------------------------------------------------
    def kill9(self) -> None:
        """SIGKILL the node and its p2pd by pid, as a crash would leave no chance to clean up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._kill_daemons()

    def terminate(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._kill_daemons()

    def _kill_daemons(self) -> None:
        for pid in self.p2pd_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._kill_daemons()
        self._reader.join(timeout=5)
        self.stderr.close()


class Cluster:
    """The nodes of one test, stopped by pid at the end (with their p2pd daemons and leftover sockets)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.nodes: list[NodeProc] = []
        self._sockets_before = set(glob.glob("/tmp/hivemind-*.sock"))

    def start(self, name: str, peers: list[str] = (), args: list[str] = (), **kw) -> NodeProc:
        node = NodeProc(self.tmp / name, peers, args, name=name, **kw)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for path in set(glob.glob("/tmp/hivemind-*.sock")) - self._sockets_before:
            try:
                os.unlink(path)
            except OSError:
                pass


def round_times(node: NodeProc, start: int, stop: int) -> list[float]:
    return [e["round_seconds"] for e in node.rounds() if start <= e["round"] < stop]
