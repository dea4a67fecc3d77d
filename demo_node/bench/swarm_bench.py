"""``demo-node bench swarm --nodes 2,4,8``: round time and bytes per node and round, ours (relay and sign exchange)
beside the same model averaged densely by hivemind's DecentralizedAverager, on this machine, in one run.

Bytes are counted twice for our nodes: by their own accounting (what they write to and read from streams) and at
the wire (the TCP counters of their p2pd daemons' sockets, from ``ss``), which adds libp2p's framing and encryption
and the DHT's traffic. The averager's bytes are counted at the wire only. Every process started here is stopped
here, by pid.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo_node.daemon.children import NodeProcess, stop_all
from demo_node.daemon.launcher import Swarm

_SS_PID = re.compile(r'users:\(\("p2pd",pid=(\d+)')
_SS_BYTES = re.compile(r"bytes_(acked|received):(\d+)")


def wire_bytes(pids: set[int]) -> dict[int, dict[str, int]]:
    """TCP bytes sent (acked) and received by the established sockets of these processes."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True).stdout
    totals = {p: {"sent": 0, "received": 0} for p in pids}
    owner = None
    for line in out.splitlines():
        m = _SS_PID.search(line)
        if m:
            owner = int(m.group(1))
            continue
        if owner in totals:
            for kind, value in _SS_BYTES.findall(line):
                totals[owner]["sent" if kind == "acked" else "received"] += int(value)
            owner = None
    return totals


def children_named(pid: int, name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm == name:
            found.append(int(entry))
    return found


def _per_node(w0: dict, w1: dict, rounds: int) -> dict[str, float]:
    ups = [(w1[p]["sent"] - w0[p]["sent"]) / rounds for p in w0]
    downs = [(w1[p]["received"] - w0[p]["received"]) / rounds for p in w0]
    return {"up_mean": statistics.mean(ups), "down_mean": statistics.mean(downs), "up_max": max(ups),
            "down_max": max(downs)}


DEFENSES = {"on": [], "off": ["--no-verify-shards", "--no-robust-aggregation"]}
"""Options that switch the run-level defenses off (signatures stay: every message of the protocol is signed)."""


def run_ours(n: int, mode: str, rounds: int, workdir: Path, model: str, node_args: list[str] = (),
             defenses: str = "on", baseline: str | None = None) -> dict:
    """One swarm of ``n`` nodes; ``defenses="baseline"``: the nodes of another checkout (``baseline``), as they are."""
    extra = ["--model", model, "--batch-size", "4", "--threads", "1", "--eval-every", "0", "--exchange", mode,
             "--deadline", "15", "--checkpoint-every", "100000", *DEFENSES.get(defenses, []), *node_args]
    other = defenses == "baseline"
    swarm = Swarm(n, workdir, extra, out=open(os.devnull, "w"), env={"PYTHONPATH": baseline} if other else None,
                  cwd=baseline if other else None)
    try:
        first = swarm.start_node(0, [])
        _wait(lambda: bool(first.maddrs), 120, "the first node to start")
        for i in range(1, n):
            swarm.start_node(i, first.maddrs)
        _wait(lambda: all(c.last_round_event().get("members") == n for c in swarm.children), 300, f"{n} members")
        r0 = max(c.last_round_event()["round"] for c in swarm.children) + 1
        _wait(lambda: all(c.last_round_event().get("round", -1) >= r0 for c in swarm.children), 120, f"round {r0}")
        pids = {c.p2pd_pids[-1] for c in swarm.children}
        w0, acc0, t0 = wire_bytes(pids), _accounted(swarm), time.monotonic()
        start_rounds = {c.name: c.last_round_event()["round"] for c in swarm.children}
        r1 = r0 + rounds
        _wait(lambda: all(c.last_round_event().get("round", -1) >= r1 for c in swarm.children), 60 + 30 * rounds, f"round {r1}")
        w1, acc1, t1 = wire_bytes(pids), _accounted(swarm), time.monotonic()
        done = statistics.mean(c.last_round_event()["round"] - start_rounds[c.name] for c in swarm.children)
        events = [e for c in swarm.children for e in c.events if e["event"] == "round" and r0 < e["round"] <= r1]
        contributed = sum(e["contributed"] for e in events) / max(1, len(events))
        tokens = statistics.mean(e["tokens_per_s"] for e in events)
        return {
            "nodes": n, "mode": mode, "defenses": defenses, "rounds": rounds, "node_args": list(node_args),
            "tokens_per_s_per_node": tokens,
            "round_seconds": (t1 - t0) / done,
            "round_seconds_median_reported": statistics.median(e["round_seconds"] for e in events),
            "members": statistics.mode(e["members"] for e in events),
            "contributed_fraction": contributed,
            "accounted_bytes_per_node_round": {
                "up_mean": statistics.mean((acc1[i][0] - acc0[i][0]) / done for i in acc0),
                "down_mean": statistics.mean((acc1[i][1] - acc0[i][1]) / done for i in acc0),
            },
            "wire_bytes_per_node_round": _per_node(w0, w1, done),
        }
    finally:
        swarm.stop(grace=30)


def _accounted(swarm: Swarm) -> dict[int, tuple[int, int]]:
    """Each node's own byte counters, from its latest round line."""
    return {c.name: (c.last_round_event()["bytes_sent"], c.last_round_event()["bytes_received"]) for c in swarm.children}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run_averager(n: int, rounds: int, workdir: Path, model: str, compression: str = "fp16") -> dict:
    workers: list[NodeProcess] = []
    base = [sys.executable, "-m", "demo_node.bench.averager_worker", "--group", str(n), "--model", model,
            "--rounds", str(rounds + 2), "--compression", compression]
    daemons: set[int] = set()
    helpers: set[int] = set()
    try:
        workers.append(NodeProcess(base, workdir / "averager-0", name="averager 0"))
        _wait(lambda: bool(workers[0].of("started")), 120, "the first averager")
        peers = workers[0].of("started")[0]["maddrs"]
        for i in range(1, n):
            workers.append(NodeProcess(base + ["--peers", *peers], workdir / f"averager-{i}", name=f"averager {i}"))
        _wait(lambda: all(w.of("started") for w in workers), 180, "averagers to start")
        for w in workers:
            dht_pid = w.of("started")[0]["dht_pid"]
            helpers.add(dht_pid)  # hivemind's DHT runs in a forked process of its own
            daemons.update(children_named(dht_pid, "p2pd"))
        _wait(lambda: all(len(w.of("round")) >= 2 for w in workers), 300, "two averaging rounds")
        w0, c0 = wire_bytes(daemons), {id(w): len(w.of("round")) for w in workers}
        _wait(lambda: all(len(w.of("round")) >= rounds + 2 for w in workers), 120 + 30 * rounds, "averaging rounds")
        w1, c1 = wire_bytes(daemons), {id(w): len(w.of("round")) for w in workers}
        done = statistics.mean(c1[k] - c0[k] for k in c0)
        seconds = [e["seconds"] for w in workers for e in w.of("round")[2:]]
        return {"nodes": n, "compression": compression, "rounds": rounds,
                "round_seconds": statistics.median(seconds),
                "wire_bytes_per_node_round": _per_node(w0, w1, max(1.0, done)),
                "failed_steps": sum(len(w.of("failed")) for w in workers)}
    finally:
        stop_all(workers, grace=20)
        for w in workers:
            w.close()
        for pid in daemons | helpers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run(nodes: list[int], rounds: int = 10, model: str = "tiny", workdir: str | None = None,
        modes: tuple[str, ...] = ("relay", "sign"), averager: bool = True, node_args: list[str] = (),
        defenses: tuple[str, ...] = ("on",), baseline: str | None = None) -> dict:
    root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-swarm-"))
    result: dict = {"model": model, "rounds": rounds, "workdir": str(root), "ours": [], "averager": []}
    for n in nodes:
        for mode in modes:
            for d in (*defenses, *(["baseline"] if baseline else [])):
                folder = root / f"ours-{n}-{mode}-{d}"
                result["ours"].append(run_ours(n, mode, rounds, folder, model, node_args, d, baseline))
        if averager:
            folder = root / f"averager-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            result["averager"].append(run_averager(n, rounds, folder, model))
    result["defense_cost"] = []
    for on in (o for o in result["ours"] if o["defenses"] == "on"):
        off = next((o for o in result["ours"] if o["defenses"] == "off" and o["nodes"] == on["nodes"]
                    and o["mode"] == on["mode"]), None)
        if off is not None:
            b_on, b_off = on["wire_bytes_per_node_round"], off["wire_bytes_per_node_round"]
            result["defense_cost"].append({
                "nodes": on["nodes"], "mode": on["mode"],
                "round_time_on_over_off": on["round_seconds"] / off["round_seconds"],
                "bytes_on_over_off": (b_on["up_mean"] + b_on["down_mean"]) / (b_off["up_mean"] + b_off["down_mean"]),
            })
    result["baseline"] = baseline
    result["against_baseline"] = []
    for on in (o for o in result["ours"] if o["defenses"] == "on"):
        old = next((o for o in result["ours"] if o["defenses"] == "baseline" and o["nodes"] == on["nodes"]
                    and o["mode"] == on["mode"]), None)
        if old is not None:
            b_on, b_old = on["wire_bytes_per_node_round"], old["wire_bytes_per_node_round"]
            a_on, a_old = on["accounted_bytes_per_node_round"], old["accounted_bytes_per_node_round"]
            result["against_baseline"].append({
                "nodes": on["nodes"], "mode": on["mode"],
                "round_time_now_over_baseline": on["round_seconds"] / old["round_seconds"],
                "wire_bytes_now_over_baseline": (b_on["up_mean"] + b_on["down_mean"])
                / (b_old["up_mean"] + b_old["down_mean"]),
                "accounted_bytes_now_over_baseline": (a_on["up_mean"] + a_on["down_mean"])
                / (a_old["up_mean"] + a_old["down_mean"]),
            })
    result["ratios"] = []
    for avg in result["averager"]:
        for ours in (o for o in result["ours"] if o["nodes"] == avg["nodes"] and o["defenses"] == "on"):
            ob, ab = ours["wire_bytes_per_node_round"], avg["wire_bytes_per_node_round"]
            result["ratios"].append({
                "nodes": avg["nodes"], "mode": ours["mode"],
                "bytes_ours_over_averager": (ob["up_mean"] + ob["down_mean"]) / (ab["up_mean"] + ab["down_mean"]),
                "round_time_ours_over_averager": ours["round_seconds"] / avg["round_seconds"],
            })
    return result


def format_result(r: dict) -> str:
    lines = [f"model {r['model']}, {r['rounds']} measured rounds per run, all processes on this machine", "",
             f"{'run':<22}{'round s':>9}{'tok/s':>8}{'contrib':>9}{'acct up':>10}{'acct down':>11}{'wire up':>10}"
             f"{'wire down':>11}"]
    for o in r["ours"]:
        a, w = o["accounted_bytes_per_node_round"], o["wire_bytes_per_node_round"]
        name = f"ours N={o['nodes']} {o['mode']}" + {"on": "", "off": " off", "baseline": " old"}[o["defenses"]]
        lines.append(f"{name:<22}{o['round_seconds']:>9.3f}"
                     f"{o['tokens_per_s_per_node']:>8.0f}{o['contributed_fraction']:>9.2f}{a['up_mean']:>10.0f}"
                     f"{a['down_mean']:>11.0f}{w['up_mean']:>10.0f}{w['down_mean']:>11.0f}")
    for a in r["averager"]:
        w = a["wire_bytes_per_node_round"]
        lines.append(f"{'averager N=' + str(a['nodes']) + ' ' + a['compression']:<22}{a['round_seconds']:>9.3f}"
                     f"{'':>8}{'':>9}{'':>10}{'':>11}{w['up_mean']:>10.0f}{w['down_mean']:>11.0f}")
    if r.get("defense_cost"):
        lines += ["", "defenses on / off (verified shards, robust aggregation; signatures in both):"]
        for q in r["defense_cost"]:
            lines.append(f"  N={q['nodes']} {q['mode']:<6} round time {q['round_time_on_over_off']:.3f}   "
                         f"bytes {q['bytes_on_over_off']:.3f}")
    if r.get("against_baseline"):
        lines += ["", f"now (defenses on) / the checkout in {r['baseline']}:"]
        for q in r["against_baseline"]:
            lines.append(f"  N={q['nodes']} {q['mode']:<6} round time {q['round_time_now_over_baseline']:.3f}   "
                         f"bytes at the wire {q['wire_bytes_now_over_baseline']:.3f}   accounted "
                         f"{q['accounted_bytes_now_over_baseline']:.3f}")
    lines += ["", "bytes per node and round (up + down, at the wire) and round time, ours / averager:"]
    for q in r["ratios"]:
        lines.append(f"  N={q['nodes']} {q['mode']:<6} bytes {q['bytes_ours_over_averager']:.4f}   "
                     f"round time {q['round_time_ours_over_averager']:.3f}")
    return "\n".join(lines)
