"""``python -m benchmarks swarm --nodes 2,4,8``: round time and bytes per node and round, ours (relay, sign or
sparse exchange) beside the same model averaged densely by hivemind's DecentralizedAverager, on this machine, in one
run.

Bytes are counted twice for our nodes: by their own accounting (what they write to and read from streams) and at
the wire, which adds libp2p's framing and encryption and the DHT's traffic. At the wire means, with ``--netns``
(root), each node's own link: every node runs in a network namespace of its own, and its veth counters see every
packet of every connection (the TCP payload is the frames less their headers); without it, the TCP counters of the
nodes' p2pd sockets (``ss``), which count only the connections open at both ends of the window. The averager's
bytes are counted at the wire only. Every process started here is stopped here, by pid.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.netns import Net, wanted
from demo_node.commands.common import emit
from demo_node.core.config import DeMoConfig
from demo_node.bench.payload_size import payload_sizes
from demo_node.daemon.children import NodeProcess, stop_all
from demo_node.daemon.launcher import Swarm
from demo_node.models.presets import PRESETS

_SS_PID = re.compile(r'users:\(\("[^"]*",pid=(\d+)')
_SS_BYTES = re.compile(r"bytes_(acked|received):(\d+)")


def wire_bytes(pids: set[int]) -> dict[int, dict[str, int]]:
    """TCP bytes sent (acked) and received by the established sockets of these processes (whatever their name: a
    p2pd, a gloo worker); sockets closed before the read are not counted."""
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


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    """CPU time (user + system, all threads) each of these processes has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
    return out


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


def _per_node(marks: list[tuple[dict, dict]], up: str = "sent", down: str = "received") -> dict[str, float]:
    ups = [(b["wire"][up] - a["wire"][up]) / (b["round"] - a["round"]) for a, b in marks]
    downs = [(b["wire"][down] - a["wire"][down]) / (b["round"] - a["round"]) for a, b in marks]
    return {"up_mean": statistics.mean(ups), "down_mean": statistics.mean(downs), "up_max": max(ups),
            "down_max": max(downs)}


def _wire(marks: list[tuple[dict, dict]], at_link: bool) -> dict:
    """Bytes at the wire per node and round: TCP payload (from the link, or the sockets' counters), and with
    ``at_link`` also whole frames (``link_bytes_per_node_round``)."""
    if not at_link:
        return {"wire_bytes_per_node_round": _per_node(marks)}
    return {"wire_bytes_per_node_round": _per_node(marks, "sent_payload", "received_payload"),
            "link_bytes_per_node_round": _per_node(marks)}


def _aligned_marks(swarm: Swarm, read_wire, r0: int, r1: int, timeout: float) -> list[tuple[dict, dict]]:
    """Per node, two marks (its round, its accounted bytes from that round's line, and its wire counters read just
    after the line arrived): the first at or past round ``r0``, the second at or past ``r1`` and MIN_SECONDS later.
    A node's wire bytes per round are then counted over exactly the rounds its own lines span: reading every node's
    counters at one instant while taking rounds from lines that are up to a round old put the two byte figures up to
    a round apart, 17% over a window of five slow rounds."""
    n = len(swarm.children)
    first: list[dict | None] = [None] * n
    last: list[dict | None] = [None] * n
    deadline = time.monotonic() + timeout
    while not all(last):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for round {r1}")
        lines = [c.last_round_event() for c in swarm.children]
        wire, now = read_wire(), time.monotonic()
        for i, ev in enumerate(lines):
            r = ev.get("round", -1)
            mark = {"round": r, "accounted": (ev.get("bytes_sent", 0), ev.get("bytes_received", 0)), "wire": wire[i],
                    "at": now}
            if first[i] is None and r >= r0:
                first[i] = mark
            elif first[i] is not None and last[i] is None and r >= r1 and now - first[i]["at"] >= MIN_SECONDS:
                last[i] = mark
        time.sleep(0.05)
    return list(zip(first, last))


MIN_SECONDS = 15.0
"""The shortest measuring window (see run_ours)."""

AUDIT_FRACTION = 0.25
DEFENSES = {"on": [], "audit": ["--audit-fraction", str(AUDIT_FRACTION)],
            "off": ["--no-verify-shards", "--no-robust-aggregation"]}
"""Options of each defense setting: on (every shard verified every round), audit (verifiers audit a quarter of the
rounds), off (no verification, no robust aggregation; signatures stay: every message of the protocol is signed)."""
LABELS = {"on": "", "audit": " audit", "off": " off", "baseline": " old"}


def run_ours(n: int, mode: str, rounds: int, workdir: Path, model: str, node_args: list[str] = (),
             defenses: str = "on", baseline: str | None = None, netns: bool = False) -> dict:
    """One swarm of ``n`` nodes; ``defenses="baseline"``: the nodes of another checkout (``baseline``), as they are;
    ``netns``: each node in a network namespace of its own, its bytes at the wire read from its link."""
    extra = ["--model", model, "--batch-size", "4", "--threads", "1", "--eval-every", "0", "--exchange", mode,
             "--deadline", "15", "--checkpoint-every", "100000", *DEFENSES.get(defenses, []), *node_args]
    other = defenses == "baseline"
    swarm = Swarm(n, workdir, extra, out=open(os.devnull, "w"), env={"PYTHONPATH": baseline} if other else None,
                  cwd=baseline if other else None)
    net = Net(n) if netns else None

    def place(i: int) -> dict:
        return {"prefix": net.prefix(i), "listen": net.address(i)} if net is not None else {}

    try:
        first = swarm.start_node(0, [], **place(0))
        _wait(lambda: bool(first.maddrs), 120, "the first node to start")
        for i in range(1, n):
            swarm.start_node(i, first.maddrs, **place(i))
        _wait(lambda: all(c.last_round_event().get("members") == n for c in swarm.children), 300, f"{n} members")
        r0 = max(c.last_round_event()["round"] for c in swarm.children) + 1
        _wait(lambda: all(c.last_round_event().get("round", -1) >= r0 for c in swarm.children), 120, f"round {r0}")
        p2pds = [c.p2pd_pids[-1] for c in swarm.children]
        # a node's CPU: its Python process and its libp2p daemon (on this machine all nodes share the cores, so the
        # round time follows the swarm's total CPU; this figure is what a node costs on a machine of its own)
        cpu_pids = set(p2pds) | {c.proc.pid for c in swarm.children}

        def read_wire() -> list[dict[str, int]]:
            """Each node's wire counters so far, in the order of the swarm's nodes."""
            if net is not None:
                return [net.link_bytes(i) for i in range(n)]
            totals = wire_bytes(set(p2pds))
            return [totals[pid] for pid in p2pds]

        c0, t0 = cpu_seconds(cpu_pids), time.monotonic()
        start_rounds = {c.name: c.last_round_event()["round"] for c in swarm.children}
        r1 = r0 + rounds
        marks = _aligned_marks(swarm, read_wire, r0, r1, 60 + 30 * rounds + MIN_SECONDS)
        c1, t1 = cpu_seconds(cpu_pids), time.monotonic()
        done = statistics.mean(c.last_round_event()["round"] - start_rounds[c.name] for c in swarm.children)
        events = [e for c in swarm.children for e in c.events if e["event"] == "round" and r0 < e["round"] <= r1]
        contributed = sum(e["contributed"] for e in events) / max(1, len(events))
        tokens = statistics.mean(e["tokens_per_s"] for e in events)
        accounted = [((b["accounted"][0] - a["accounted"][0]) / (b["round"] - a["round"]),
                      (b["accounted"][1] - a["accounted"][1]) / (b["round"] - a["round"])) for a, b in marks]
        return {
            "nodes": n, "mode": mode, "defenses": defenses, "rounds": rounds, "node_args": list(node_args),
            "audit_fraction": AUDIT_FRACTION if defenses == "audit" else 1.0,
            "wire_measured_at": "link" if net is not None else "sockets",
            "tokens_per_s_per_node": tokens,
            "round_seconds": (t1 - t0) / done,
            "round_seconds_median_reported": statistics.median(e["round_seconds"] for e in events),
            "members": statistics.mode(e["members"] for e in events),
            "exchange": statistics.mode(e["mode"] for e in events),
            "contributed_fraction": contributed,
            "rounds_measured_per_node": [b["round"] - a["round"] for a, b in marks],
            "accounted_bytes_per_node_round": {"up_mean": statistics.mean(u for u, _ in accounted),
                                               "down_mean": statistics.mean(d for _, d in accounted)},
            **_wire(marks, net is not None),
            "cpu_seconds_per_node_round": sum(c1[p] - c0[p] for p in c1 if p in c0) / n / done,
        }
    finally:
        swarm.stop(grace=30)
        if net is not None:
            net.close()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run_averager(n: int, rounds: int, workdir: Path, model: str, compression: str = "fp16",
                 netns: bool = False) -> dict:
    workers: list[NodeProcess] = []
    base = [sys.executable, "-m", "benchmarks.averager_worker", "--group", str(n), "--model", model,
            "--rounds", str(rounds + 2), "--compression", compression]
    daemons: set[int] = set()
    helpers: set[int] = set()
    net = Net(n) if netns else None

    def start(i: int, peers: list[str]) -> NodeProcess:
        where = ["--listen", net.address(i)] if net is not None else []
        return NodeProcess(base + where + (["--peers", *peers] if peers else []), workdir / f"averager-{i}",
                           name=f"averager {i}", prefix=net.prefix(i) if net is not None else ())

    try:
        workers.append(start(0, []))
        _wait(lambda: bool(workers[0].of("started")), 120, "the first averager")
        peers = workers[0].of("started")[0]["maddrs"]
        for i in range(1, n):
            workers.append(start(i, peers))
        _wait(lambda: all(w.of("started") for w in workers), 180, "averagers to start")
        for w in workers:
            dht_pid = w.of("started")[0]["dht_pid"]
            helpers.add(dht_pid)  # hivemind's DHT runs in a forked process of its own
            daemons.update(children_named(dht_pid, "p2pd"))
        _wait(lambda: all(len(w.of("round")) >= 2 for w in workers), 300, "two averaging rounds")
        read_wire = (lambda: {i: net.link_bytes(i) for i in range(n)}) if net is not None else (lambda: wire_bytes(daemons))
        w0, c0 = read_wire(), {id(w): len(w.of("round")) for w in workers}
        _wait(lambda: all(len(w.of("round")) >= rounds + 2 for w in workers), 120 + 30 * rounds, "averaging rounds")
        w1, c1 = read_wire(), {id(w): len(w.of("round")) for w in workers}
        done = statistics.mean(c1[k] - c0[k] for k in c0)
        seconds = [e["seconds"] for w in workers for e in w.of("round")[2:]]
        return {"nodes": n, "compression": compression, "rounds": rounds,
                "round_seconds": statistics.median(seconds),
                **_wire([({"round": 0, "wire": w0[k]}, {"round": max(1.0, done), "wire": w1[k]}) for k in w0],
                        net is not None),
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
        if net is not None:
            net.close()


def run(nodes: list[int], rounds: int = 10, model: str = "tiny", workdir: str | None = None,
        modes: tuple[str, ...] = ("relay", "sign"), averager: bool = True, node_args: list[str] = (),
        defenses: tuple[str, ...] = ("on",), baseline: str | None = None, netns: bool = False) -> dict:
    root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-swarm-"))
    result: dict = {"model": model, "rounds": rounds, "workdir": str(root), "ours": [], "averager": [],
                    "wire_measured_at": "link" if netns else "sockets"}
    for n in nodes:
        for mode in modes:
            for d in (*defenses, *(["baseline"] if baseline else [])):
                folder = root / f"ours-{n}-{mode}-{d}"
                result["ours"].append(run_ours(n, mode, rounds, folder, model, node_args, d, baseline, netns))
        if averager:
            folder = root / f"averager-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            result["averager"].append(run_averager(n, rounds, folder, model, netns=netns))
    # the issue's yardstick for sign exchange: contribution slices up and the others' in, own shard's signs out and
    # the others' in, (N - 1) / N of a payload and of a bit per parameter each way, plus 2 KB
    sizes = payload_sizes(model)
    result["payload_bytes"], result["params"] = sizes["ours_bytes"][DeMoConfig().values], sizes["params"]
    result["against_ideal"] = []
    for o in (o for o in result["ours"] if o["exchange"] == "sign"):
        ideal = 2 * (o["nodes"] - 1) / o["nodes"] * (result["payload_bytes"] + result["params"] / 8) + 2048
        w, a = o["wire_bytes_per_node_round"], o["accounted_bytes_per_node_round"]
        result["against_ideal"].append({
            "nodes": o["nodes"], "defenses": o["defenses"], "ideal": ideal,
            "wire_over_ideal": (w["up_mean"] + w["down_mean"]) / ideal,
            "accounted_over_ideal": (a["up_mean"] + a["down_mean"]) / ideal,
        })
    # the home-links yardstick: a node's bytes per round each way (the mean of up and down) per parameter
    result["per_param"] = [{"nodes": o["nodes"], "mode": o["mode"], "exchange": o["exchange"],
                            "defenses": o["defenses"],
                            "wire_each_way": (o["wire_bytes_per_node_round"]["up_mean"]
                                              + o["wire_bytes_per_node_round"]["down_mean"]) / 2 / sizes["params"]}
                           for o in result["ours"]]
    result["defense_cost"] = []
    for on in (o for o in result["ours"] if o["defenses"] in ("on", "audit")):
        off = next((o for o in result["ours"] if o["defenses"] == "off" and o["nodes"] == on["nodes"]
                    and o["mode"] == on["mode"]), None)
        if off is not None:
            b_on, b_off = on["wire_bytes_per_node_round"], off["wire_bytes_per_node_round"]
            result["defense_cost"].append({
                "nodes": on["nodes"], "mode": on["mode"], "defenses": on["defenses"],
                "round_time_on_over_off": on["round_seconds"] / off["round_seconds"],
                "cpu_on_over_off": on["cpu_seconds_per_node_round"] / off["cpu_seconds_per_node_round"],
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
                "cpu_now_over_baseline": on["cpu_seconds_per_node_round"] / old["cpu_seconds_per_node_round"],
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
    where = {"link": "each node's link (TCP payload)", "sockets": "the p2pd sockets"}[r["wire_measured_at"]]
    lines = [f"model {r['model']}, at least {r['rounds']} measured rounds and {MIN_SECONDS:.0f} s per run, all "
             f"processes on this machine; CPU s: per node and round, its process and its libp2p daemon; wire: {where}",
             "",
             f"{'run':<22}{'round s':>9}{'tok/s':>8}{'contrib':>9}{'acct up':>10}{'acct down':>11}{'wire up':>10}"
             f"{'wire down':>11}{'CPU s':>8}"]
    for o in r["ours"]:
        a, w = o["accounted_bytes_per_node_round"], o["wire_bytes_per_node_round"]
        name = f"ours N={o['nodes']} {o['mode']}" + LABELS[o["defenses"]]
        lines.append(f"{name:<22}{o['round_seconds']:>9.3f}"
                     f"{o['tokens_per_s_per_node']:>8.0f}{o['contributed_fraction']:>9.2f}{a['up_mean']:>10.0f}"
                     f"{a['down_mean']:>11.0f}{w['up_mean']:>10.0f}{w['down_mean']:>11.0f}"
                     f"{o['cpu_seconds_per_node_round']:>8.3f}")
    for a in r["averager"]:
        w = a["wire_bytes_per_node_round"]
        lines.append(f"{'averager N=' + str(a['nodes']) + ' ' + a['compression']:<22}{a['round_seconds']:>9.3f}"
                     f"{'':>8}{'':>9}{'':>10}{'':>11}{w['up_mean']:>10.0f}{w['down_mean']:>11.0f}")
    if r.get("defense_cost"):
        lines += ["", f"defenses on (or audit: {AUDIT_FRACTION:g} of rounds) / off (verified shards, robust "
                  "aggregation; signatures in both):"]
        for q in r["defense_cost"]:
            lines.append(f"  N={q['nodes']} {q['mode']:<6}{q.get('defenses', 'on'):<6} round time "
                         f"{q['round_time_on_over_off']:.3f}   CPU per node {q['cpu_on_over_off']:.3f}   "
                         f"bytes {q['bytes_on_over_off']:.3f}")
    if r.get("against_baseline"):
        lines += ["", f"now (defenses on) / the checkout in {r['baseline']}:"]
        for q in r["against_baseline"]:
            lines.append(f"  N={q['nodes']} {q['mode']:<6} round time {q['round_time_now_over_baseline']:.3f}   "
                         f"CPU per node {q['cpu_now_over_baseline']:.3f}   "
                         f"bytes at the wire {q['wire_bytes_now_over_baseline']:.3f}   accounted "
                         f"{q['accounted_bytes_now_over_baseline']:.3f}")
    if r.get("against_ideal"):
        lines += ["", f"sign exchange, bytes per node and round (up + down) / 2(N-1)/N x (payload {r['payload_bytes']:,}"
                  f" + params/8) + 2 KB:"]
        for q in r["against_ideal"]:
            label = LABELS[q["defenses"]]
            lines.append(f"  N={q['nodes']}{label:<5} ideal {q['ideal']:>9,.0f}   at the wire {q['wire_over_ideal']:.3f}   "
                         f"accounted {q['accounted_over_ideal']:.3f}")
    if r.get("per_param"):
        lines += ["", f"bytes per parameter each way per node and round, at the wire ({r['params']:,} parameters):"]
        for q in r["per_param"]:
            lines.append(f"  N={q['nodes']} {q['mode']:<6}{LABELS[q['defenses']]:<5} ({q['exchange']}) "
                         f"{q['wire_each_way']:.4f}")
    lines += ["", "bytes per node and round (up + down, at the wire) and round time, ours / averager:"]
    for q in r["ratios"]:
        lines.append(f"  N={q['nodes']} {q['mode']:<6} bytes {q['bytes_ours_over_averager']:.4f}   "
                     f"round time {q['round_time_ours_over_averager']:.3f}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    sw = sub.add_parser("swarm", help="round time and bytes per node: ours (relay, sparse, sign) vs hivemind's "
                        "averager")
    sw.add_argument("--nodes", default="2,4,8", help="comma-separated swarm sizes")
    sw.add_argument("--rounds", type=int, default=10, help="measured rounds per run")
    sw.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    sw.add_argument("--modes", default="relay,sign", help="our exchange modes to measure (relay, sign, sparse, "
                    "auto)")
    sw.add_argument("--skip-averager", action="store_true", help="do not run hivemind's DecentralizedAverager")
    sw.add_argument("--defenses", default="on", help="comma-separated: on (verified shards, robust aggregation), "
                    "audit (the same, verifiers auditing a quarter of the rounds), off; several run side by side")
    sw.add_argument("--netns", choices=["auto", "on", "off"], default="auto",
                    help="run each node in a network namespace of its own and read its bytes at the wire from its "
                    "link (needs root; auto: when possible), else from the TCP counters of its sockets")
    sw.add_argument("--baseline", metavar="DIR", help="also run the nodes of another demo-node checkout (an older "
                    "version: PYTHONPATH=DIR), with the same options")
    sw.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    sw.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    sw.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    sw.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    nodes = [int(n) for n in args.nodes.split(",")]
    modes = tuple(args.modes.split(","))
    node_args = list(args.node_args or [])
    defenses = tuple(args.defenses.split(","))
    unknown = [d for d in defenses if d not in DEFENSES]
    if unknown:
        raise SystemExit(f"python -m benchmarks swarm: --defenses {','.join(unknown)}: each must be one of "
                         f"{', '.join(DEFENSES)}")
    result = run(nodes, rounds=args.rounds, model=args.model, workdir=args.workdir, modes=modes,
                 averager=not args.skip_averager, node_args=node_args, defenses=defenses,
                 baseline=args.baseline,
                 netns=wanted(args.netns))
    emit(result, format_result(result), args.json)
    return 0
