"""``python -m benchmarks api``: what the public Python API costs, measured side by side in one run.

1. One node, one process: a round (forward, backward, step) with the optimizer alone (``DeMo.step``) and through
   the API (``SwarmOptimizer.step`` in a one-node swarm on 127.0.0.1: the hand-over to the round loop, encoding, the
   owner's shard, the outcome, the update, the digest), on copies of one model with the same batch, alternating,
   medians of ``iters`` rounds.
2. Three nodes as processes on this machine: a plain user script on the API (:mod:`benchmarks.api_worker`)
   against ``demo-node join`` with the same model, batch and threads, and, given ``baseline`` (the folder of
   another checkout, an older demo-node), against that version's ``demo-node join``: tokens/s per node and seconds
   per round over ``rounds`` rounds after all are members.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from demo_node.daemon.children import NodeProcess, join_command, stop_all
from demo_node.commands.common import emit, quiet_libraries
from demo_node.models.presets import PRESETS

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def one_node(model_name: str, iters: int, batch: int) -> dict:
    import demo_node
    from demo_node.models.gpt import PRESETS, build

    cfg = PRESETS[model_name]
    model_a = build(model_name)
    model_b = copy.deepcopy(model_a)
    tokens = torch.randint(0, cfg.vocab, (batch, cfg.context + 1), generator=torch.Generator().manual_seed(0))
    x, y = tokens[:, :-1], tokens[:, 1:]
    alone = demo_node.DeMo(model_a.parameters(), lr=1e-3)
    # a deadline far above a round's compute, so that the one-node swarm never closes a round without the gradient
    api = demo_node.SwarmOptimizer(model_b.parameters(), run_name="bench-api-solo", listen=LOOPBACK, lr=1e-3,
                                   deadline=600.0)
    try:
        api.join()

        def round_of(model, opt, **kw) -> tuple[float, float]:
            begun = time.perf_counter()
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            stepped = time.perf_counter()
            opt.step(**kw)
            end = time.perf_counter()
            return end - begun, end - stepped

        for _ in range(2):  # warm-up
            round_of(model_a, alone)
            round_of(model_b, api, samples=batch)
        a_round, a_step, b_round, b_step = [], [], [], []
        for _ in range(iters):
            r, s = round_of(model_a, alone)
            a_round.append(r)
            a_step.append(s)
            r, s = round_of(model_b, api, samples=batch)
            b_round.append(r)
            b_step.append(s)
    finally:
        api.leave()
    ms = {
        "round_optimizer_alone": statistics.median(a_round) * 1e3,
        "round_through_api": statistics.median(b_round) * 1e3,
        "step_optimizer_alone": statistics.median(a_step) * 1e3,
        "step_through_api": statistics.median(b_step) * 1e3,
    }
    return {"model": model_name, "params": sum(p.numel() for p in model_a.parameters()), "batch": batch,
            "iters": iters, "threads": torch.get_num_threads(), "ms": ms,
            "api_overhead_of_a_round": ms["round_through_api"] / ms["round_optimizer_alone"] - 1.0}


def _command(kind: str, args: list[str], peers: list[str]) -> list[str]:
    with_peers = args + (["--peers", *peers] if peers else [])
    if kind == "api":
        return [sys.executable, "-m", "benchmarks.api_worker", *with_peers]
    # the daemon: the same loop, plus what it does that the worker does not, switched off (evaluation, schedule)
    return join_command([*with_peers, "--listen", *LOOPBACK, "--control", "127.0.0.1:0", "--eval-every", "0",
                         "--lr-schedule", "constant", "--warmup-rounds", "0", "--lr", "3e-3"])


def three_nodes(kind: str, workdir: Path, model: str, batch: int, rounds: int, baseline: str | None = None) -> dict:
    """Three processes of one kind (api, join, or baseline: the join of the checkout in ``baseline``)."""
    args = ["--model", model, "--batch-size", str(batch), "--threads", "1", "--deadline", "10"]
    # the baseline's package must win over this one: first on the path, and run from its folder (python -m puts the
    # working directory first)
    env = {"PYTHONPATH": baseline} if kind == "baseline" else None
    cwd = baseline if kind == "baseline" else None
    command_kind = "api" if kind == "api" else "join"
    nodes: list[NodeProcess] = []
    try:
        first = NodeProcess(_command(command_kind, args, []), workdir / "node-0", env=env, cwd=cwd, name=f"{kind} 0")
        nodes.append(first)
        first.wait_started(180)
        for i in (1, 2):
            nodes.append(NodeProcess(_command(command_kind, args, first.maddrs), workdir / f"node-{i}", env=env,
                                     cwd=cwd, name=f"{kind} {i}"))
        for n in nodes:
            n.wait(lambda n=n: any(e["members"] == 3 for e in n.rounds()), 300, "3 members")
        r0 = max(n.last_round() for n in nodes) + 2
        for n in nodes:
            n.wait_round(r0, 120)
        t0 = time.monotonic()
        start = {n.name: n.last_round() for n in nodes}
        for n in nodes:
            n.wait_round(r0 + rounds, 120 + 10 * rounds)
        seconds = time.monotonic() - t0
        done = statistics.mean(n.last_round() - start[n.name] for n in nodes)
        window = [e for n in nodes for e in n.rounds() if r0 < e["round"] <= r0 + rounds]
        return {"kind": kind, "rounds": rounds, "round_seconds": seconds / done,
                "tokens_per_s_per_node": statistics.mean(e["tokens_per_s"] for e in window if e.get("tokens_per_s")),
                "contributed_fraction": sum(e["contributed"] for e in window) / len(window)}
    finally:
        stop_all(nodes, grace=30)
        for n in nodes:
            n.close()


def run(model: str = "bench", iters: int = 10, batch: int = 8, swarm_model: str = "tiny", swarm_batch: int = 8,
        rounds: int = 40, repeats: int = 2, baseline: str | None = None, workdir: str | None = None,
        skip_swarm: bool = False) -> dict:
    root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-api-"))
    result: dict = {"one_node": one_node(model, iters, batch), "workdir": str(root)}
    if skip_swarm:
        return result
    kinds = ["api", "join"] + (["baseline"] if baseline else [])
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for rep in range(repeats):  # alternating, so that a slow spell of the machine hits every kind alike
        for kind in kinds:
            runs[kind].append(three_nodes(kind, root / f"{kind}-{rep}", swarm_model, swarm_batch, rounds, baseline))
    summary = {k: {"round_seconds": statistics.median(r["round_seconds"] for r in v),
                   "tokens_per_s_per_node": statistics.median(r["tokens_per_s_per_node"] for r in v)}
               for k, v in runs.items()}
    ratios = {"join_over_api_round_time": summary["join"]["round_seconds"] / summary["api"]["round_seconds"]}
    if baseline:
        ratios["join_over_baseline_round_time"] = summary["join"]["round_seconds"] / summary["baseline"]["round_seconds"]
        ratios["join_over_baseline_tokens_per_s"] = (summary["join"]["tokens_per_s_per_node"]
                                                     / summary["baseline"]["tokens_per_s_per_node"])
    result.update({"three_nodes": {"model": swarm_model, "batch": swarm_batch, "rounds": rounds, "repeats": repeats,
                                   "baseline": baseline, "runs": runs, "median": summary}, "ratios": ratios})
    return result


def format_result(r: dict) -> str:
    o = r["one_node"]
    lines = [f"one node, {o['model']} GPT ({o['params']:,} params), batch {o['batch']}, {o['threads']} threads, "
             f"medians of {o['iters']} rounds", f"{'':<30}{'round ms':>10}{'step ms':>10}"]
    lines.append(f"{'optimizer alone (DeMo.step)':<30}{o['ms']['round_optimizer_alone']:>10.1f}"
                 f"{o['ms']['step_optimizer_alone']:>10.1f}")
    lines.append(f"{'through the API (one-node swarm)':<30}{o['ms']['round_through_api']:>10.1f}"
                 f"{o['ms']['step_through_api']:>10.1f}")
    lines.append(f"the API adds {100 * o['api_overhead_of_a_round']:.1f}% to a round")
    if "three_nodes" in r:
        t = r["three_nodes"]
        lines += ["", f"three nodes on this machine, {t['model']} GPT, batch {t['batch']}, {t['rounds']} rounds, "
                  f"median of {t['repeats']} runs each", f"{'':<34}{'round s':>9}{'tok/s/node':>12}"]
        names = {"api": "user script on the API", "join": "demo-node join (on the API)",
                 "baseline": f"demo-node join of {t['baseline']}"}
        for kind, m in t["median"].items():
            lines.append(f"{names[kind]:<34}{m['round_seconds']:>9.3f}{m['tokens_per_s_per_node']:>12.0f}")
        lines += [""] + [f"{k:<36}{v:>8.3f}" for k, v in r["ratios"].items()]
    return "\n".join(lines)


def add_parser(sub) -> None:
    api = sub.add_parser("api", help="what the Python API adds: a round alone vs through the API; a 3-node "
                         "swarm of user scripts vs demo-node join (vs an older checkout's, with --baseline)")
    api.add_argument("--model", default="bench", choices=list(PRESETS), help="GPT preset of the one-node part")
    api.add_argument("--iters", type=int, default=10, help="timed rounds per figure of the one-node part")
    api.add_argument("--batch", type=int, default=8, help="sequences per round in the one-node part")
    api.add_argument("--swarm-model", default="tiny", choices=list(PRESETS), help="GPT preset of the 3-node part")
    api.add_argument("--swarm-batch", type=int, default=8, help="sequences per node and round in the 3-node part")
    api.add_argument("--rounds", type=int, default=40, help="measured rounds per 3-node run")
    api.add_argument("--repeats", type=int, default=2, help="3-node runs of each kind, alternating")
    api.add_argument("--baseline", metavar="DIR", help="a checkout of another demo-node version: its demo-node join "
                     "runs beside this one's (PYTHONPATH=DIR)")
    api.add_argument("--skip-swarm", action="store_true", help="only the one-node part")
    api.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    api.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    api.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    quiet_libraries()
    result = run(model=args.model, iters=args.iters, batch=args.batch, swarm_model=args.swarm_model,
                 swarm_batch=args.swarm_batch, rounds=args.rounds, repeats=args.repeats,
                 baseline=args.baseline, workdir=args.workdir, skip_swarm=args.skip_swarm)
    emit(result, format_result(result), args.json)
    return 0
