"""``python -m benchmarks nat``: a swarm with members behind home routers (benchmarks/natnet.py) against the same
swarm with every member public: who found itself reachable, who owns shards, NAT-to-NAT connections direct or
relayed, round time, and bytes per round of public and NATed members.

Every node is started plainly (``demo-node join --peers <the first public node>``, nothing about NAT): each learns its
reachability itself from its peers' dial-back probes. The first public node founds the swarm; the rest join it.
After every node is a member, ``--rounds`` rounds are measured; then every node is asked to leave, and its ``left``
event says how it was connected to each peer (direct or through a relay) and what went over relays.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.natnet import KINDS, NatNet, available
from benchmarks.wan_bench import _wait
from demo_node.commands.common import emit
from demo_node.daemon.children import NodeProcess, join_command, stop_all
from demo_node.models.presets import PRESETS


QUIET = 15.0
"""Seconds without a role change before the rounds are measured."""


def _node(net: NatNet, host: str, workdir: Path, peers: list[str], args: list[str], quic: bool) -> NodeProcess:
    folder = workdir / host
    listen = [net.listen(host), *([f"/ip4/{net.ip(host)}/udp/0/quic-v1"] if quic else [])]
    cmd = ["--identity", str(folder / "identity.key"), "--checkpoint-dir", str(folder / "ckpt"),
           "--listen", *listen, "--control", "127.0.0.1:0", *args]
    if peers:
        cmd += ["--peers", *peers]
    return NodeProcess(join_command(cmd), folder, prefix=net.prefix(host), name=host)


def run_setting(public: int, homes: list[str], rounds: int, workdir: Path, compute: float = 0.3,
                model: str = "tiny", node_args: list[str] = (), home_args: list[str] = (), quic: bool = True,
                settle: float = 45.0, owners: int | None = None) -> dict:
    """``public`` nodes on the internet and one behind a router of each kind in ``homes``; the figures of
    ``rounds`` rounds, at least ``settle`` seconds after every node is a member and once no node changed its role
    for QUIET seconds (``owners``: once every node's rounds have that many owners instead of ``settle``).
    ``home_args``: more options for the NATed nodes; ``quic``: every node listens on QUIC too (as by default)."""
    args = ["--model", model, "--batch-size", "4", "--threads", "1", "--eval-every", "0", "--deadline", "10",
            "--compute-seconds", str(compute), "--checkpoint-every", "100000", *node_args]
    net = NatNet(public, homes)
    hosts = [f"p{i}" for i in range(public)] + [f"h{j}" for j in range(len(homes))]
    nodes: list[NodeProcess] = []
    try:
        began = time.monotonic()
        nodes.append(_node(net, hosts[0], workdir, [], args, quic))
        _wait(lambda: bool(nodes[0].maddrs), 180, "the first node to start", nodes)
        nodes += [_node(net, h, workdir, nodes[0].maddrs, [*args, *(home_args if h.startswith("h") else [])], quic)
                  for h in hosts[1:]]
        n = len(nodes)
        _wait(lambda: all(x.last_round_event().get("members") == n and x.last_round_event().get("member")
                          for x in nodes), 400, f"{n} members", nodes)
        all_in = time.monotonic() - began
        # private members take a few heartbeats to find direct paths and offer to own shards: measure once no
        # node changed its role for a while
        settled = time.monotonic() + (0.0 if owners is not None else settle)

        def quiet() -> bool:
            last = max((e["ts"] for x in nodes for e in x.of("role")), default=0.0)
            counted = owners is None or all(x.last_round_event().get("owners") == owners for x in nodes)
            return counted and time.monotonic() >= settled and time.time() - last >= QUIET

        _wait(quiet, settle + 240, "roles to settle", nodes)
        r0 = max(x.last_round() for x in nodes) + 1
        _wait(lambda: all(x.last_round() >= r0 for x in nodes), 300, f"round {r0}", nodes)
        wire0 = {h: net.link_bytes(h) for h in hosts}
        r1 = r0 + rounds
        _wait(lambda: all(x.last_round() >= r1 for x in nodes), 60 + 30 * rounds, f"round {r1}", nodes)
        wire1 = {h: net.link_bytes(h) for h in hosts}
        codes = stop_all(nodes)
    finally:
        for x in nodes:
            x.close()
        net.close()
    return _figures(nodes, hosts, homes, net, r0, r1, wire0, wire1, all_in, codes)


def _figures(nodes, hosts, homes, net, r0, r1, wire0, wire1, all_in, codes) -> dict:
    by_round = {x.name: {e["round"]: e for e in x.rounds()} for x in nodes}
    window = range(r0 + 1, r1 + 1)
    mismatched = [r for r in window if len({by_round[h][r]["digest"] for h in hosts if r in by_round[h]}) > 1]
    started = {x.name: x.of("started")[-1] for x in nodes}
    left = {x.name: (x.of("left") or [{}])[-1] for x in nodes}
    peer_of = {h: started[h]["peer"] for h in hosts}

    def per_round(h: str, key: str) -> float:
        a, b = by_round[h].get(r0), by_round[h].get(r1)
        return (b[key] - a[key]) / (r1 - r0) if a and b else float("nan")

    home_hosts = [h for h in hosts if h.startswith("h")]
    pairs = {"direct": 0, "relayed": 0, "not connected": 0}
    for i, a in enumerate(home_hosts):
        for b in home_hosts[i + 1:]:
            seen = {left[a].get("paths", {}).get(peer_of[b]), left[b].get("paths", {}).get(peer_of[a])}
            pairs["direct" if "direct" in seen else "relayed" if "relayed" in seen else "not connected"] += 1
    sent = {h: per_round(h, "bytes_sent") for h in hosts}
    received = {h: per_round(h, "bytes_received") for h in hosts}
    public_hosts = [h for h in hosts if h.startswith("p")]
    mean = statistics.mean
    return {
        "public": len(public_hosts), "homes": {h: net.kinds[h] for h in home_hosts}, "nodes": len(hosts),
        "rounds": r1 - r0, "seconds_to_all_members": round(all_in, 1),
        "reachability": {h: started[h].get("reachability") for h in hosts},
        "owns_shards": {h: ([started[h]] + [e for e in x.of("role")])[-1].get("owns_shards")
                        for h, x in zip(hosts, nodes)},
        "role_changes": {h: len(x.of("role")) for h, x in zip(hosts, nodes)},
        "owners": sorted({by_round[h][r]["owners"] for h in hosts for r in window if r in by_round[h]}),
        "members": sorted({by_round[h][r]["members"] for h in hosts for r in window if r in by_round[h]}),
        "digest_rounds_checked": len(window), "digest_mismatched_rounds": mismatched,
        "round_s_mean": round(mean(by_round[h][r]["round_seconds"] for h in hosts for r in window
                                   if r in by_round[h]), 3),
        "nat_pairs": pairs,
        "accounted_sent_per_round": {h: round(v) for h, v in sent.items()},
        "accounted_received_per_round": {h: round(v) for h, v in received.items()},
        "wire_sent_per_round": {h: round((wire1[h]["sent"] - wire0[h]["sent"]) / (r1 - r0)) for h in hosts},
        "public_over_home_sent": round(mean(sent[h] for h in public_hosts) / mean(sent[h] for h in home_hosts), 2)
        if home_hosts else None,
        "relayed_bytes": {h: left[h].get("relayed_bytes") for h in hosts},
        "exit_codes": codes,
    }


def run(public: int, homes: list[str], rounds: int, compute: float, model: str, workdir: str | None,
        node_args: list[str], owners: int | None = None) -> dict:
    """The swarm with ``homes`` behind NAT, then all public; ``owners``: see :func:`run_setting`."""
    base = Path(workdir or tempfile.mkdtemp(prefix="demo-node-nat-"))
    behind = run_setting(public, homes, rounds, base / "nat", compute, model, node_args, owners=owners)
    everyone = run_setting(public + len(homes), [], rounds, base / "public", compute, model, node_args, settle=0.0)
    return {"behind_nat": behind, "all_public": everyone,
            "round_time_ratio": round(behind["round_s_mean"] / everyone["round_s_mean"], 2)}


def format_result(r: dict) -> str:
    b, p = r["behind_nat"], r["all_public"]
    lines = [f"{b['public']} public nodes and {len(b['homes'])} behind home routers "
             f"({', '.join(f'{h}: {k}' for h, k in b['homes'].items())}), {b['rounds']} rounds measured",
             "reachability: " + ", ".join(f"{h} {s}" for h, s in b["reachability"].items()),
             f"owners per round {b['owners']}, members {b['members']}, digests differing in "
             f"{len(b['digest_mismatched_rounds'])} of {b['digest_rounds_checked']} rounds",
             "NAT-to-NAT pairs: " + ", ".join(f"{k} {v}" for k, v in b["nat_pairs"].items()),
             f"round time: {b['round_s_mean']:.3f} s behind NAT, {p['round_s_mean']:.3f} s all public "
             f"({r['round_time_ratio']:.2f}x)",
             f"bytes sent per round (accounted), mean public / mean NATed member: {b['public_over_home_sent']}x",
             "  " + ", ".join(f"{h} {v:,}" for h, v in b["accounted_sent_per_round"].items()),
             "  all public: " + ", ".join(f"{h} {v:,}" for h, v in p["accounted_sent_per_round"].items())]
    return "\n".join(lines)


def add_parser(sub) -> None:
    nat = sub.add_parser("nat", help="a swarm with members behind emulated home routers against the same swarm all "
                         "public: reachability, owners, NAT-to-NAT paths, round time, bytes (needs root)")
    nat.add_argument("--public", type=int, default=5, help="nodes on the internet (default 5)")
    nat.add_argument("--homes", default="cone,cone,symmetric",
                     help=f"router kinds, one node behind each ({', '.join(KINDS)})")
    nat.add_argument("--rounds", type=int, default=10, help="measured rounds per setting")
    nat.add_argument("--compute", type=float, default=0.3, help="compute budget per node and round, seconds")
    nat.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    nat.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    nat.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    nat.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    nat.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    why = available()
    if why:
        raise SystemExit(f"python -m benchmarks nat: {why}")
    homes = [k for k in args.homes.split(",") if k]
    result = run(args.public, homes, args.rounds, args.compute, args.model, args.workdir,
                 list(args.node_args or []))
    emit(result, format_result(result), args.json)
    return 0
