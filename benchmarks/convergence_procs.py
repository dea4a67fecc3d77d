"""The multi-process baselines of ``python -m benchmarks convergence``: over gloo (dense averaging, the reference DeMo's
all-gather) and ``hivemind.Optimizer``.

Each starts N worker processes on 127.0.0.1 (``convergence_gloo`` or ``convergence_hivemind``), waits for all to
finish, and merges their ``curve`` lines: the held-out loss from worker 0, the bytes (measured at the wire by each
worker, ``ss``) as the mean over workers.
"""

from __future__ import annotations

import re
import socket
import statistics
import sys
import time
from pathlib import Path

_PARTIAL = re.compile(r"Reducer: received [\d.]+% of input tensors")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_joined(workers: list, base: list[str], workdir: Path, nodes: int, label: str) -> None:
    """Start worker 0, wait for its addresses, then workers 1..N-1 with ``--peers`` pointing at it (each worker's
    folder is workdir/<label>-<i>), each added to ``workers`` as it starts: the caller stops them (``stop_all``),
    also when this raises."""
    from benchmarks.swarm_bench import _wait
    from demo_node.daemon.children import NodeProcess

    workers.append(NodeProcess(base + ["--index", "0"], workdir / f"{label}-0", name=f"{label} 0"))
    _wait(lambda: bool(workers[0].of("started")) or workers[0].proc.poll() is not None, 120, f"the first {label}")
    if not workers[0].of("started"):
        raise RuntimeError(f"the first {label} exited: see {workdir / f'{label}-0' / 'stderr.log'}")
    peers = workers[0].of("started")[0]["maddrs"]
    for i in range(1, nodes):
        workers.append(NodeProcess(base + ["--index", str(i), "--peers", *peers], workdir / f"{label}-{i}",
                                   name=f"{label} {i}"))


def common_args(s, lr: float, steps: int, eval_every: int, threads: int, warmup: int) -> list[str]:
    """The arguments every convergence worker takes: the setup's shape, data and schedule."""
    return ["--nodes", str(s.nodes), "--batch", str(s.per_node), "--steps", str(steps), "--lr", repr(lr), "--seed",
            str(s.seed), "--windows", str(s.hx.shape[0]), "--eval-every", str(eval_every), "--warmup", str(warmup),
            "--threads", str(threads), "--model", s.model, "--device", s.device]


def wait_finished(workers: list, timeout: float, what: str) -> None:
    from benchmarks.swarm_bench import _wait

    def done() -> bool:
        for w in workers:
            if w.proc.poll() is not None and not w.of("finished"):
                raise RuntimeError(f"{w.name} exited early: see {w.folder / 'stderr.log'}")
        return all(w.of("finished") for w in workers)

    _wait(done, timeout, what)


def _merge(workers: list, seconds: float) -> dict:
    by_step: dict[int, list[dict]] = {}
    for w in workers:
        for e in w.of("curve"):
            by_step.setdefault(e["step"], []).append(e)
    curve = []
    for step in sorted(by_step):
        lines = by_step[step]
        loss = next((e["loss"] for e in lines if "loss" in e), None)
        if loss is not None:
            curve.append({"step": step, "loss": loss, "bytes_sent": statistics.mean(e["bytes_sent"] for e in lines),
                          "bytes_received": statistics.mean(e["bytes_received"] for e in lines)})
    finished = [w.of("finished")[0] for w in workers]
    if curve:  # the end figure: read by each worker after its last step, all peers still connected
        curve[-1]["bytes_sent"] = statistics.mean(f["bytes_sent"] for f in finished)
        curve[-1]["bytes_received"] = statistics.mean(f["bytes_received"] for f in finished)
    return {"curve": curve, "seconds": seconds, "finished": finished, "bytes_measured": "wire (ss)"}


def train_gloo(s, lr: float, steps: int, eval_every: int, workdir: Path, threads: int, warmup: int,
               timeout: float, method: str = "dense") -> dict:
    """N processes over gloo: AdamW with the flat gradient all-reduced (``dense``), or the reference DeMo with its
    top-k all-gathered (``reference``)."""
    from demo_node.daemon.children import NodeProcess, stop_all

    base = [sys.executable, "-m", "benchmarks.convergence_gloo", "--port", str(_free_port()), "--method", method,
            *common_args(s, lr, steps, eval_every, threads, warmup)]
    workers: list[NodeProcess] = []
    began = time.monotonic()
    try:
        for i in range(s.nodes):
            workers.append(NodeProcess(base + ["--index", str(i)], workdir / f"rank-{i}", name=f"rank {i}"))
        wait_finished(workers, timeout, f"{s.nodes} gloo ranks to take {steps} steps")
        for w in workers:  # they exit by themselves after a last barrier
            w.proc.wait(timeout=60)
        return _merge(workers, time.monotonic() - began)
    finally:
        stop_all(workers, grace=10)
        for w in workers:
            w.close()


def train_hivemind(s, lr: float, steps: int, eval_every: int, workdir: Path, threads: int, warmup: int,
                   timeout: float, compression: str, matchmaking_time: float) -> dict:
    """``hivemind.Optimizer`` (inner AdamW) over N peers, each with its own DHT and p2pd."""
    from demo_node.daemon.children import stop_all

    if s.nodes < 2:
        raise ValueError("hivemind.Optimizer needs at least 2 peers here (groups of exactly N)")
    stop = workdir / "stop"
    base = [sys.executable, "-m", "benchmarks.convergence_hivemind", "--compression", compression,
            "--stop-file", str(stop), "--matchmaking-time", repr(matchmaking_time),
            "--run-id", f"bench-convergence-{workdir.name}-{time.time_ns()}".replace(".", "_"), "--verbose",
            *common_args(s, lr, steps, eval_every, threads, warmup)]
    workers: list = []
    began = time.monotonic()
    try:
        start_joined(workers, base, workdir, s.nodes, "peer")
        wait_finished(workers, timeout, f"{s.nodes} hivemind peers to take {steps} epochs")
        seconds = time.monotonic() - began
        stop.touch()
        for w in workers:  # they shut hivemind down and exit by themselves
            try:
                w.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - stop_all below ends it
                pass
        out = _merge(workers, seconds)
        out["local_steps"] = [f["local_steps"] for f in out["finished"]]
        # hivemind reports an all-reduce that timed out on part of the tensors only as a warning, and the step then
        # goes on with what arrived: count those per peer (0 everywhere: every epoch averaged all gradients)
        logs = [(w.folder / "stderr.log").read_text(errors="replace").splitlines() for w in workers]
        out["partial_averages"] = [sum(1 for line in log if _PARTIAL.search(line)) for log in logs]
        # an epoch a peer closed with its own gradients only (averaging skipped or failed)
        out["local_only_epochs"] = [sum(1 for line in log if "Proceeding with local gradients" in line)
                                    for log in logs]
        out["epoch_jumps"] = [f["epoch_jumps"] for f in out["finished"]]
        return out
    finally:
        stop.touch()
        stop_all(workers, grace=20)
        for w in workers:
            w.close()
