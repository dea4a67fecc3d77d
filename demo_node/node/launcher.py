"""``demo-node swarm --nodes N``: N nodes on 127.0.0.1 as separate processes, and their progress.

The first node founds the run; the others join it with its address. On a terminal a live line per node shows its
round, loss, tokens/s and bytes; otherwise one plain line per node and round. Ctrl+C (or --rounds) stops every
node gracefully (SIGTERM: finish the round, checkpoint, leave); a node still running after a grace period is killed,
with its p2pd daemon, by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


@dataclass
class Child:
    index: int
    proc: subprocess.Popen
    folder: Path
    events: list[dict] = field(default_factory=list)
    last_round: dict = field(default_factory=dict)
    maddrs: list[str] = field(default_factory=list)
    p2pd_pid: int | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    status: str = "starting"


def node_command(folder: Path, peers: list[str], extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "demo_node", "join", "--log-format", "json",
        "--listen", "/ip4/127.0.0.1/tcp/0", "--control", "127.0.0.1:0",
        "--identity", str(folder / "identity.key"),
        "--checkpoint-dir", str(folder / "checkpoints"),
        *(["--peers", *peers] if peers else []),
        *extra,
    ]


class Swarm:
    def __init__(self, nodes: int, workdir: Path, extra: list[str], out: TextIO = sys.stdout):
        self.n, self.workdir, self.extra, self.out = nodes, workdir, extra, out
        self.children: list[Child] = []
        self.live = out.isatty()
        self._lock = threading.Lock()
        self._stopping = False

    def start_node(self, index: int, peers: list[str], extra: list[str] | None = None) -> Child:
        folder = self.workdir / f"node-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / "stderr.log", "ab")
        proc = subprocess.Popen(node_command(folder, peers, self.extra + (extra or [])), stdout=subprocess.PIPE,
                                stderr=log, text=True, bufsize=1, start_new_session=True)
        child = Child(index, proc, folder)
        self.children.append(child)
        threading.Thread(target=self._read, args=(child,), daemon=True).start()
        return child

    def _read(self, child: Child) -> None:
        assert child.proc.stdout is not None
        with open(child.folder / "events.jsonl", "a") as keep:
            for line in child.proc.stdout:
                keep.write(line)
                keep.flush()
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                with self._lock:
                    child.events.append(ev)
                    if ev["event"] == "started":
                        child.maddrs, child.p2pd_pid = ev["maddrs"], ev["p2pd_pid"]
                    elif ev["event"] == "round":
                        child.last_round = ev
                        child.status = "training" if ev.get("member") else "joining"
                        child.ready.set()
                    elif ev["event"] == "left":
                        child.status = "left"
                self._show(child, ev)
        child.ready.set()

    def _show(self, child: Child, ev: dict) -> None:
        if self.live:
            self._redraw()
        elif ev["event"] in ("round", "started", "joined", "synced", "left", "diverged", "checkpoint"):
            with self._lock:
                self.out.write(f"node {child.index}: {format_event(ev)}\n")
                self.out.flush()

    def _note(self, text: str) -> None:
        if not self.live:
            with self._lock:
                self.out.write(text + "\n")
                self.out.flush()

    def _redraw(self) -> None:
        with self._lock:
            lines = [f"{'node':<5}{'state':<10}{'round':>6}{'loss':>8}{'tok/s':>9}{'members':>8}{'sent':>10}{'recv':>10}"]
            for c in self.children:
                r = c.last_round
                lines.append(
                    f"{c.index:<5}{c.status:<10}{r.get('round', '-'):>6}"
                    f"{(format(r['loss'], '.3f') if 'loss' in r else '-'):>8}"
                    f"{(format(r['tokens_per_s'], '.0f') if 'tokens_per_s' in r else '-'):>9}"
                    f"{r.get('members', '-'):>8}{_mb(r.get('bytes_sent')):>10}{_mb(r.get('bytes_received')):>10}"
                )
            self.out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
            self.out.flush()

    def run(self, rounds: int, timeout: float = 0) -> int:
        first = self.start_node(0, [])
        deadline = time.monotonic() + 120
        while not first.maddrs and first.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not first.maddrs:
            self.out.write(f"the first node did not start; see {first.folder / 'stderr.log'}\n")
            self.stop()
            return 1
        for i in range(1, self.n):
            self.start_node(i, first.maddrs)
        try:
            began = time.monotonic()
            all_in: int | None = None  # the round at which every node had become a member
            while True:
                time.sleep(0.2)
                running = [c for c in self.children if c.proc.poll() is None]
                if not running:
                    break
                if all_in is None and len(running) == self.n and all(
                        c.last_round.get("member") and c.last_round.get("members") == self.n for c in running):
                    all_in = max(c.last_round["round"] for c in running)
                    self._note(f"all {self.n} nodes are members from round {all_in}")
                if rounds and all_in is not None and all(c.last_round.get("round", -1) >= all_in + rounds for c in running):
                    break
                if timeout and time.monotonic() - began > timeout:
                    break
        except KeyboardInterrupt:
            pass
        return self.stop()

    def stop(self, grace: float = 60.0) -> int:
        """SIGTERM every node, wait for them to leave, then kill what is left (and its p2pd) by pid."""
        for c in self.children:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
            if c.p2pd_pid:
                try:
                    os.kill(c.p2pd_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        bad = [c.index for c in self.children if c.proc.returncode not in (0,)]
        if not self.live:
            self.out.write(f"stopped {len(self.children)} nodes" + (f"; exit codes not 0: nodes {bad}" if bad else "") + "\n")
        return 1 if bad else 0


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}MB"


def format_event(ev: dict) -> str:
    if ev["event"] == "round":
        return (f"round {ev['round']} loss {ev['loss']:.3f} {ev['tokens_per_s']:.0f} tok/s members {ev['members']} "
                f"{ev['round_seconds']:.2f}s sent {_mb(ev['bytes_sent'])} recv {_mb(ev['bytes_received'])}")
    rest = {k: v for k, v in ev.items() if k not in ("ts", "event", "run_id", "peer", "run_config", "bytes")}
    return f"{ev['event']} {rest}"
