"""``python -m benchmarks wan``: a swarm over emulated home links (a namespace per node, tbf up and down, a delay line
per node for latency): round time, compute utilisation, tokens/s, time to join and bytes per node against the link.

Each node i lives in its own network namespace with address 10.77.0.(i+1), joined to the others by a bridge. Its
upload is a token bucket on its veth, its download one on the bridge's end of that veth. Latency: the node listens
on 127.0.0.1 inside its namespace, unreachable from outside, and announces the address of a delaying TCP proxy
(benchmarks/delay_proxy.py) that runs beside it on 10.77.0.(i+1); so every node-to-node connection passes
through exactly one proxy (the listener's), which holds each direction for the latency: the round trip between two
nodes grows by twice the latency. The proxy also serves an echo port through the same delay lines; the round trip
measured through it before the nodes start (and again under load, mid-window) is printed with the results.

Every node has a compute budget per round (``--compute-seconds``) rather than a fixed batch: on this machine all
nodes share the CPU cores, so a time budget keeps compute at the set time per round whatever the contention, and the
utilisation figure (compute time / round time) is about the network and the protocol, as a home GPU's would be.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.netns import Net, available
from benchmarks.swarm_bench import cpu_seconds
from demo_node.bench.payload_size import payload_sizes
from demo_node.commands.common import emit
from demo_node.core.config import DeMoConfig
from demo_node.daemon.children import NodeProcess
from demo_node.daemon.launcher import Swarm
from demo_node.models.presets import PRESETS

PROXY_PORT, NODE_PORT, ECHO_PORT = 40000, 40001, 40002
MIN_SECONDS = 10.0
"""The shortest measuring window: round events reach this process a little after the wire counters are read."""


def host_ip(i: int) -> str:
    return f"10.77.0.{i + 1}"


def tbf_burst(mbit: float) -> str:
    # a bucket of 32 kbit drains in under a millisecond at 50 Mbit/s, less than a timer tick: tbf would then fall
    # short of its rate; 4 ms of the rate (at least 4,000 bytes) keeps it on rate without letting long bursts through
    return str(max(4_000, int(mbit * 1e6 / 8 * 0.004)))  # bytes


class _TimedSwarm(Swarm):
    """A Swarm that notes when each node was started and when its first round as a member arrived."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started_at: dict[str, float] = {}
        self.member_at: dict[str, float] = {}

    def start_node(self, index, peers, extra=None, prefix=(), listen="/ip4/127.0.0.1/tcp/0"):
        self.started_at[f"node {index}"] = time.monotonic()
        return super().start_node(index, peers, extra, prefix, listen)

    def _show(self, child: NodeProcess, ev: dict) -> None:
        if ev["event"] == "round" and ev.get("member") and child.name not in self.member_at:
            self.member_at[child.name] = time.monotonic()


def _wait(predicate, timeout: float, what: str, procs: list[NodeProcess]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [p for p in procs if p.proc.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead[0].name} exited ({dead[0].proc.returncode}) before {what}:\n{dead[0].tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def steps(events: list[dict]) -> list[dict]:
    """A node's round lines reduced to one per step: a round the node did not step in repeats its last step's
    figures (with overlap, or a compute longer than the round, rounds can close more often than a node steps)."""
    out, last = [], None
    for e in events:
        key = (e["compute_s"], e["tokens_per_s"], e["tokens"])
        if key != last and e["tokens"] and e["tokens_per_s"] > 0:
            out.append({"compute_s": e["compute_s"], "cycle_s": e["tokens"] / e["tokens_per_s"]})
        last = key
    return out


def ping(net: Net, src: int, dst: int, count: int = 10, bulk: int = 0) -> dict:
    """Round trips from host ``src`` to host ``dst``'s echo port, through dst's delay proxy and both links."""
    out = subprocess.run([*net.prefix(src), sys.executable, "-m", "benchmarks.delay_proxy", "ping",
                          f"{host_ip(dst)}:{ECHO_PORT}", "--count", str(count), "--bulk", str(bulk)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"ping {src} -> {dst} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_setting(n: int, overlap: bool, down: float, up: float, latency_ms: float, compute: float, rounds: int,
                model: str, workdir: Path, node_args: list[str] = (), shape_after_join: bool = False,
                joiner: tuple[float, float] | None = None) -> dict:
    """One swarm of ``n`` nodes on links of ``down``/``up`` Mbit/s and ``latency_ms`` one way; the figures of
    ``rounds`` rounds (at least MIN_SECONDS) after every node is a member. ``shape_after_join``: the rate limits
    go on only once every node is a member (the latency is there from the start). ``joiner``: the (down, up)
    Mbit/s of the last node's link instead, started once the others train together (a slow home link joining)."""
    extra = ["--model", model, "--batch-size", "4", "--threads", "1", "--eval-every", "0",
             "--compute-seconds", str(compute), "--checkpoint-every", "100000",
             "--overlap" if overlap else "--no-overlap", *node_args]
    net = Net(n)
    proxies: list[NodeProcess] = []
    swarm = _TimedSwarm(n, workdir, extra, out=open(os.devnull, "w"))
    try:
        def shape() -> None:
            for i in range(n):
                d, u = joiner if joiner is not None and i == n - 1 else (down, up)
                net.limit(i, f"{u:g}mbit", burst=tbf_burst(u))
                net.limit_down(i, f"{d:g}mbit", burst=tbf_burst(d))

        if not shape_after_join:
            shape()
        for i in range(n):
            ip = host_ip(i)
            proxies.append(NodeProcess(
                [sys.executable, "-m", "benchmarks.delay_proxy", "serve", "--listen", f"{ip}:{PROXY_PORT}",
                 "--to", f"127.0.0.1:{NODE_PORT}", "--delay-ms", str(latency_ms), "--echo", f"{ip}:{ECHO_PORT}"],
                workdir / f"proxy-{i}", prefix=net.prefix(i), name=f"proxy {i}"))
        _wait(lambda: all(p.of("ready") for p in proxies), 60, "the delay proxies", proxies)
        # the round trip between two idle hosts, and the echoed throughput (the slower uplink bounds it)
        idle = ping(net, 1 % n, 0, count=10, bulk=0 if shape_after_join else int(min(up, down) * 1e6 / 8))

        def place(i: int) -> dict:
            return {"prefix": net.prefix(i), "listen": f"/ip4/127.0.0.1/tcp/{NODE_PORT}",
                    "extra": ["--announce", f"/ip4/{host_ip(i)}/tcp/{PROXY_PORT}"]}

        began = time.monotonic()
        first = swarm.start_node(0, [], **place(0))
        _wait(lambda: bool(first.maddrs), 180, "the first node to start", swarm.children + proxies)
        for i in range(1, n - (joiner is not None)):
            swarm.start_node(i, first.maddrs, **place(i))
        if joiner is not None:
            _wait(lambda: all(c.last_round_event().get("members") == n - 1 for c in swarm.children), 300,
                  f"{n - 1} members", swarm.children + proxies)
            swarm.start_node(n - 1, first.maddrs, **place(n - 1))
        everyone = swarm.children + proxies
        _wait(lambda: all(c.last_round_event().get("members") == n and c.last_round_event().get("member")
                          for c in swarm.children), 300, f"{n} members", everyone)
        all_in = time.monotonic() - began
        if shape_after_join:
            shape()
        r0 = max(c.last_round_event()["round"] for c in swarm.children) + 1
        _wait(lambda: all(c.last_round_event().get("round", -1) >= r0 for c in swarm.children), 300,
              f"round {r0}", everyone)
        cpu_pids = {c.proc.pid for c in swarm.children} | {c.p2pd_pids[-1] for c in swarm.children if c.p2pd_pids}
        cpu_pids |= {p.proc.pid for p in proxies}
        w0, c0, t0 = {i: net.link_bytes(i) for i in range(n)}, cpu_seconds(cpu_pids), time.monotonic()
        start_rounds = {c.name: c.last_round_event()["round"] for c in swarm.children}
        loaded = ping(net, 1 % n, 0, count=5)  # the round trip while the swarm trains (queues in the tbf)
        r1 = r0 + rounds
        _wait(lambda: all(c.last_round_event().get("round", -1) >= r1 for c in swarm.children)
              and time.monotonic() - t0 >= MIN_SECONDS, 120 + 60 * rounds, f"round {r1}", everyone)
        w1, c1, t1 = {i: net.link_bytes(i) for i in range(n)}, cpu_seconds(cpu_pids), time.monotonic()
        done = statistics.mean(c.last_round_event()["round"] - start_rounds[c.name] for c in swarm.children)
        period = (t1 - t0) / done
        events = [e for c in swarm.children for e in c.of("round") if r0 < e["round"] <= r1 and e["member"]]
        compute_s = statistics.mean(e["compute_s"] for e in events)
        # compute time over the time from one step to the next (compute, exchange and waiting), per node and step
        stepped = [s for c in swarm.children for s in steps([e for e in events if e["peer"] == c.peer])]
        # every round of the window that all nodes applied must carry one digest
        by_round: dict[int, set] = {}
        for e in events:
            by_round.setdefault(e["round"], set()).add(e["digest"])
        mismatched = sorted(r for r, d in by_round.items() if len(d) > 1)
        joins = {c.name: swarm.member_at[c.name] - swarm.started_at[c.name] for c in swarm.children
                 if c.name in swarm.member_at}
        # a joiner's state downloads, and the rounds the swarm went on while its first one came (that state's round
        # to its first round as a member): more than the owners keep (LIMITS.keep_rounds) is what it had to follow
        downloads = {c.name: len(c.of("synced")) for c in swarm.children}
        spans = {c.name: c.rounds()[0]["round"] - c.of("synced")[0]["round"] for c in swarm.children
                 if c.of("synced") and c.rounds()}
        up_cap, down_cap = up * 1e6 / 8 * period, down * 1e6 / 8 * period
        links = [joiner if joiner is not None and i == n - 1 else (down, up) for i in range(n)]
        ups = [(w1[i]["sent"] - w0[i]["sent"]) / done for i in range(n)]
        downs = [(w1[i]["received"] - w0[i]["received"]) / done for i in range(n)]
        return {
            "nodes": n, "overlap": overlap, "down_mbit": down, "up_mbit": up, "latency_ms": latency_ms,
            "compute_seconds": compute, "model": model, "rounds": done, "node_args": list(node_args),
            "shaped_after_join": shape_after_join,
            "rtt_idle": idle, "rtt_loaded": loaded,
            "round_seconds": period,
            "round_seconds_reported_median": statistics.median(e["round_seconds"] for e in events),
            "compute_s_mean": compute_s,
            "utilisation": statistics.mean(s["compute_s"] / s["cycle_s"] for s in stepped),
            "step_seconds": statistics.mean(s["cycle_s"] for s in stepped),
            "utilisation_per_round": compute_s / period,
            "optimizer_s_mean": statistics.mean(e["optimizer_s"] for e in events),
            "tokens_per_s_per_node": statistics.mean(e["tokens_per_s"] for e in events),
            "members": statistics.mode(e["members"] for e in events),
            "exchange": statistics.mode(e["mode"] for e in events),
            "contributed_fraction": sum(e["contributed"] for e in events) / len(events),
            "digest_rounds_checked": len(by_round), "digest_mismatched_rounds": mismatched,
            "join_seconds": joins, "all_members_after_s": all_in, "joiner_link": joiner,
            "state_downloads": downloads, "rounds_during_join": spans,
            "join_seconds_mean_joiners": statistics.mean(v for k, v in joins.items() if k != "node 0")
            if n > 1 else joins.get("node 0"),
            "join_seconds_max": max(joins.values()),
            "link_bytes_per_node_round": {"up_mean": statistics.mean(ups), "up_max": max(ups),
                                          "down_mean": statistics.mean(downs), "down_max": max(downs)},
            "capacity_bytes_per_round": {"up": up_cap, "down": down_cap},
            "up_fraction_max": max(ups[i] / (links[i][1] * 1e6 / 8 * period) for i in range(n)),
            "down_fraction_max": max(downs[i] / (links[i][0] * 1e6 / 8 * period) for i in range(n)),
            # the whole machine's cores shared by every node, its libp2p daemon and its proxy
            "cpu_busy_fraction": sum(c1[p] - c0[p] for p in c1 if p in c0) / (t1 - t0) / (os.cpu_count() or 1),
        }
    finally:
        swarm.stop(grace=30)
        for p in proxies:
            p.terminate(timeout=5)
            p.close()
        net.close()


def run(nodes: list[int], down: float = 50, up: float = 10, latency_ms: float = 50, compute: float = 1.0,
        rounds: int = 8, overlap: str = "both", model: str = "tiny", workdir: str | None = None,
        node_args: list[str] = (), shape_after_join: bool = False, joiner: tuple[float, float] | None = None) -> dict:
    root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-wan-"))
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[overlap]
    sizes = payload_sizes(model)
    result = {"model": model, "params": sizes["params"], "payload_bytes": sizes["ours_bytes"][DeMoConfig().values],
              "down_mbit": down, "up_mbit": up, "latency_ms": latency_ms, "compute_seconds": compute,
              "cores": os.cpu_count(), "workdir": str(root), "shaped_after_join": shape_after_join,
              "joiner_link": joiner, "runs": []}
    for n in nodes:
        for ov in modes:
            folder = root / f"wan-{n}-{'overlap' if ov else 'plain'}"
            result["runs"].append(run_setting(n, ov, down, up, latency_ms, compute, rounds, model, folder,
                                              node_args, shape_after_join, joiner))
    return result


def format_result(r: dict) -> str:
    lines = [f"model {r['model']} ({r['params']:,} parameters, payload {r['payload_bytes']:,} B), links "
             f"{r['down_mbit']:g} Mbit/s down / {r['up_mbit']:g} up, {r['latency_ms']:g} ms one way (round trip "
             f"+{2 * r['latency_ms']:g} ms), compute budget {r['compute_seconds']:g} s per round; all nodes share "
             f"this machine's {r['cores']} cores"
             + ("; links shaped only once every node was a member (join times are over unlimited links)"
                if r.get("shaped_after_join") else "")
             + (f"; the last node joins once the others train, on {r['joiner_link'][0]:g} Mbit/s down / "
                f"{r['joiner_link'][1]:g} up" if r.get("joiner_link") else ""),
             "bytes: whole frames at the node's link per round (mean / max node), and the max node's fraction of the "
             "link's capacity x round time",
             "",
             f"{'run':<16}{'round s':>8}{'step s':>7}{'util':>6}{'u/rnd':>6}{'tok/s':>7}{'join s':>13}{'up B':>18}"
             f"{'up':>6}{'down B':>18}{'down':>6}{'rtt ms':>14}{'cpu':>5}{'dig':>5}"]
    for o in r["runs"]:
        b = o["link_bytes_per_node_round"]
        name = f"N={o['nodes']} {'overlap' if o['overlap'] else 'no overlap'}"
        if o["exchange"] != "relay":
            name += f" {o['exchange']}"
        join = f"{o['join_seconds_mean_joiners']:.1f}/{o['join_seconds_max']:.1f}"
        rtt = f"{o['rtt_idle']['rtt_ms_median']:.0f}/{o['rtt_loaded']['rtt_ms_median']:.0f}"
        lines.append(f"{name:<16}{o['round_seconds']:>8.2f}{o['step_seconds']:>7.2f}{o['utilisation']:>6.2f}"
                     f"{o['utilisation_per_round']:>6.2f}{o['tokens_per_s_per_node']:>7.0f}"
                     f"{join:>13}{b['up_mean']:>9.0f}/{b['up_max']:<8.0f}{o['up_fraction_max']:>6.3f}"
                     f"{b['down_mean']:>9.0f}/{b['down_max']:<8.0f}{o['down_fraction_max']:>6.3f}{rtt:>14}"
                     f"{o['cpu_busy_fraction']:>5.2f}{'ok' if not o['digest_mismatched_rounds'] else 'DIFF':>5}")
        if o.get("joiner_link"):
            last = f"node {o['nodes'] - 1}"
            lines.append(f"  {last}: {o['state_downloads'].get(last, 0)} state download(s), member "
                         f"{o['join_seconds'].get(last, float('nan')):.1f} s after its start, "
                         f"{o['rounds_during_join'].get(last, 0)} rounds after the round of the state it took")
    lines += ["", "round s: wall time per round over the window; step s: a node's time from one step to the next;",
              "util: compute time / step time (a node's round lines, one per step); u/rnd: mean compute_s / round s "
              "(the same when every node steps once a round)",
              "join s: process start -> first round as a member, mean of the joiners / slowest; rtt ms: median idle "
              "/ under load (host 1 -> host 0, echo through the proxy)",
              "cpu: busy fraction of all cores; dig: one digest per round across nodes",
              "idle echo throughput (bounded by the slower uplink): "
              + ", ".join(f"N={o['nodes']}: {o['rtt_idle']['echo_mbit_s']:.2f} Mbit/s" for o in r["runs"]
                          if "echo_mbit_s" in o["rtt_idle"])]
    return "\n".join(lines)


def add_parser(sub) -> None:
    wan = sub.add_parser("wan", help="a swarm over emulated home links (a namespace per node, tbf up/down, a "
                         "delaying proxy for latency): round time, compute utilisation, join time, link bytes")
    wan.add_argument("--nodes", default="2,4,8", help="comma-separated swarm sizes")
    wan.add_argument("--down", type=float, default=50, help="download of every node, Mbit/s")
    wan.add_argument("--up", type=float, default=10, help="upload of every node, Mbit/s")
    wan.add_argument("--latency", type=float, default=50, help="one-way latency added to every connection, ms (the "
                     "round trip grows by twice it)")
    wan.add_argument("--compute", type=float, default=1.0, help="compute budget per node and round, seconds")
    wan.add_argument("--rounds", type=int, default=8, help="measured rounds per setting (at least 10 s)")
    wan.add_argument("--overlap", choices=["both", "on", "off"], default="both", help="run with --overlap, "
                     "without, or both")
    wan.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    wan.add_argument("--shape-after-join", action="store_true", help="rate-limit the links only once every node "
                     "is a member (join times are then over unlimited links)")
    wan.add_argument("--joiner-down", type=float, default=0.0, help="the last node joins once the others train "
                     "together, over a link of this download (Mbit/s) and --joiner-up")
    wan.add_argument("--joiner-up", type=float, default=10.0, help="the joining node's upload, Mbit/s")
    wan.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    wan.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    wan.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    wan.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    why = available()
    if why:
        raise SystemExit(f"python -m benchmarks wan: {why}")
    result = run([int(n) for n in args.nodes.split(",")], down=args.down, up=args.up,
                 latency_ms=args.latency, compute=args.compute, rounds=args.rounds, overlap=args.overlap,
                 model=args.model, workdir=args.workdir, node_args=list(args.node_args or []),
                 shape_after_join=args.shape_after_join,
                 joiner=(args.joiner_down, args.joiner_up) if args.joiner_down else None)
    emit(result, format_result(result), args.json)
    return 0
