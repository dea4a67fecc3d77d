"""``demo-node swarm --nodes N``: N nodes on 127.0.0.1 as separate processes, their progress, and a summary.

The first node founds the run; the others join it with its address. On a terminal a live line per node shows its
round, loss, tokens/s and bytes; otherwise one plain line per node and round. Ctrl+C (or --rounds) stops every
node gracefully (SIGTERM: finish the round, checkpoint, leave); a node still running after a grace period is killed,
with its p2pd daemon, by pid. At the end a summary says how many rounds were trained, how the held-out loss moved,
how many bytes each node moved per round against a dense fp32 gradient, and whether every replica ended equal.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from demo_node.daemon.children import NodeProcess, join_command, stop_all


def node_args(folder: Path, peers: list[str], extra: list[str], listen: str = "/ip4/127.0.0.1/tcp/0") -> list[str]:
    return [
        "--listen", listen, "--control", "127.0.0.1:0",
        "--identity", str(folder / "identity.key"),
        "--checkpoint-dir", str(folder / "checkpoints"),
        *(["--peers", *peers] if peers else []),
        *extra,
    ]


class Swarm:
    def __init__(self, nodes: int, workdir: Path, extra: list[str], out: TextIO = sys.stdout,
                 env: dict | None = None, cwd: str | None = None):
        self.n, self.workdir, self.extra, self.out = nodes, workdir, extra, out
        self.env, self.cwd = env, cwd
        """For nodes of another demo-node checkout (benchmarks): its folder first on PYTHONPATH, run from there."""
        self.children: list[NodeProcess] = []
        self.live = out.isatty()
        self._lock = threading.Lock()
        self.all_in: int | None = None
        """The round from which every node was a member."""

    def start_node(self, index: int, peers: list[str], extra: list[str] | None = None, prefix: list[str] = (),
                   listen: str = "/ip4/127.0.0.1/tcp/0") -> NodeProcess:
        """Start node ``index``; ``prefix`` and ``listen``: to run it in a network namespace (benchmarks)."""
        folder = self.workdir / f"node-{index}"
        child = NodeProcess(join_command(node_args(folder, peers, self.extra + (extra or []), listen)), folder,
                            name=f"node {index}", on_event=self._show, env=self.env, cwd=self.cwd, prefix=prefix)
        self.children.append(child)
        return child

    def _show(self, child: NodeProcess, ev: dict) -> None:
        if self.live:
            self._redraw()
        elif ev["event"] in ("round", "started", "joined", "synced", "left", "diverged", "checkpoint"):
            with self._lock:
                self.out.write(f"{child.name}: {format_event(ev)}\n")
                self.out.flush()

    def _note(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _redraw(self) -> None:
        with self._lock:
            lines = [f"{'node':<8}{'state':<10}{'round':>6}{'loss':>8}{'tok/s':>9}{'members':>8}{'sent':>10}{'recv':>10}"]
            for c in self.children:
                r = c.last_round_event()
                state = "left" if c.of("left") else ("training" if r.get("member") else ("joining" if r else "starting"))
                lines.append(
                    f"{c.name:<8}{state:<10}{r.get('round', '-'):>6}"
                    f"{(format(r['loss'], '.3f') if r.get('loss') is not None else '-'):>8}"
                    f"{(format(r['tokens_per_s'], '.0f') if r.get('tokens_per_s') is not None else '-'):>9}"
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
            while True:
                time.sleep(0.2)
                running = [c for c in self.children if c.proc.poll() is None]
                if not running:
                    break
                last = [c.last_round_event() for c in running]
                if self.all_in is None and len(running) == self.n and all(
                        r.get("member") and r.get("members") == self.n for r in last):
                    self.all_in = max(r["round"] for r in last)
                    if not self.live:
                        self._note(f"all {self.n} nodes are members from round {self.all_in}")
                if rounds and self.all_in is not None and all(r.get("round", -1) >= self.all_in + rounds for r in last):
                    break
                if timeout and time.monotonic() - began > timeout:
                    break
        except KeyboardInterrupt:
            pass
        return self.stop()

    def stop(self, grace: float = 60.0) -> int:
        """Let every node leave (SIGTERM), kill what is left by pid, print the summary; 1 if a node failed."""
        codes = stop_all(self.children, grace)
        bad = [name for name, code in codes.items() if code != 0]
        for c in self.children:
            c.close()
        self.out.write(f"stopped {len(self.children)} nodes" + (f"; exit codes not 0: {bad}" if bad else "") + "\n")
        self.out.write(summary(self.children, self.all_in) + "\n")
        self.out.flush()
        return 1 if bad else 0


def summary(children: list[NodeProcess], all_in: int | None = None) -> str:
    """Rounds trained, held-out loss first -> last, bytes per node per round against a dense fp32 gradient, and
    whether every replica ended on one digest."""
    lines = ["summary:"]
    applied = [len(c.rounds()) for c in children]
    lines.append(f"  rounds applied per node: {applied}" + (f" (all members from round {all_in})" if all_in is not None else ""))
    evals = [e["held_out_loss"] for e in children[0].of("eval") if e.get("held_out_loss") is not None] if children else []
    if evals:
        lines.append(f"  held-out loss: {evals[0]:.3f} -> {evals[-1]:.3f} ({len(evals)} evaluations on {children[0].name})")
    else:
        lines.append("  held-out loss: no evaluation")
    per_round = []
    for c, n in zip(children, applied):
        left = c.of("left")
        if left and n:
            sent = sum(v for k, v in left[-1]["bytes"].items() if k.endswith("/sent"))
            received = sum(v for k, v in left[-1]["bytes"].items() if k.endswith("/received"))
            per_round.append((sent / n, received / n))
    started = children[0].of("started") if children else []
    if per_round and started:
        dense = 4 * started[-1]["params"]
        up = statistics.mean(s for s, _ in per_round)
        down = statistics.mean(r for _, r in per_round)
        lines.append(f"  bytes per node per round: {up:,.0f} sent, {down:,.0f} received; a dense fp32 gradient is "
                     f"{dense:,} ({dense / max(up, 1):.0f}x what a node sent)")
    common = min((c.last_round() for c in children), default=-1)
    digests = {c.name: c.digest_at(common) for c in children if c.digest_at(common) is not None}
    if common >= 0 and len(digests) == len(children):
        same = len(set(digests.values())) == 1
        lines.append(f"  replicas after round {common}: " + ("one digest " + next(iter(digests.values())) if same
                                                            else f"DIFFERENT digests {digests}"))
    else:
        lines.append("  replicas: no round that every node applied")
    return "\n".join(lines)


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}MB"


def format_event(ev: dict) -> str:
    if ev["event"] == "round":
        loss = "-" if ev.get("loss") is None else f"{ev['loss']:.3f}"
        return (f"round {ev['round']} loss {loss} {ev.get('tokens_per_s') or 0:.0f} tok/s members {ev['members']} "
                f"{ev['round_seconds']:.2f}s sent {_mb(ev['bytes_sent'])} recv {_mb(ev['bytes_received'])}")
    rest = {k: v for k, v in ev.items() if k not in ("ts", "event", "run_id", "peer", "run_config", "bytes")}
    return f"{ev['event']} {rest}"
