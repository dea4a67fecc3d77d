"""``python -m benchmarks convergence``'s command line: the options of :func:`benchmarks.convergence.run`."""

from __future__ import annotations

import argparse

from benchmarks import convergence
from benchmarks.convergence_model import MODELS
from demo_node.commands.common import emit


def add_parser(sub) -> None:
    cv = sub.add_parser("convergence", help="held-out loss against step and bytes sent per node: AdamW, dense "
                        "averaging, the reference DeMo and our swarm, the same data and global batch")
    cv.add_argument("--nodes", type=int, default=2, help="workers the global batch is split over (default 2)")
    cv.add_argument("--steps", type=int, default=145, help="optimizer steps of every run (default 145)")
    cv.add_argument("--global-batch", type=int, default=24, help="sequences per step over all nodes (default 24)")
    cv.add_argument("--windows", type=int, default=256, help="held-out windows per evaluation (default 256)")
    cv.add_argument("--eval-every", type=int, default=10, help="steps between held-out evaluations (default 10)")
    cv.add_argument("--seed", type=int, default=0, help="model seed; worker i's data seed is seed*1000+i")
    cv.add_argument("--seeds", help="several seeds, comma-separated (e.g. 0,1): every method runs once per seed, at "
                    "the lr its sweep chose (--sweep-seeds); the table gives the mean and sd of the final loss")
    cv.add_argument("--lrs", help="lr candidates per family, e.g. 'adamw=1e-3,3e-3,1e-2;demo=1e-3,3e-3' (the "
                    "default); adamw-dense and hivemind* run at adamw's choice")
    cv.add_argument("--sweep", choices=["full", "short"], default="full",
                    help="lr sweep over the full horizon (default: picks the lr that is best at the steps reported; "
                    "the best run is the result, so it costs one run per candidate) or short (--sweep-steps, then "
                    "one full run: cheaper, but a short horizon favours larger lrs)")
    cv.add_argument("--sweep-seeds", choices=["first", "all"], default="first",
                    help="the seeds each lr is tried on: the first (default), or all of --seeds (the lr with the "
                    "lowest mean final loss wins; with --sweep full those runs are the results, so it costs nothing "
                    "more than running every candidate on every seed)")
    cv.add_argument("--warmup", type=int, help="steps of linear lr warm-up before the cosine, the same for every "
                    "method (default: min(20, steps // 5))")
    cv.add_argument("--sweep-steps", type=int, help="steps of each short sweep run (default steps // 3)")
    cv.add_argument("--hivemind-matchmaking", type=float, default=2.0,
                    help="hivemind.Optimizer's matchmaking_time in seconds (default 2.0; loopback, groups of N)")
    cv.add_argument("--runs", help="methods, comma-separated (default all): adamw, adamw-dense, reference (over N "
                    "processes), reference-sim (simulated in one), ours, ours-k8, ours-fp16, ours-sign, hivemind, "
                    "hivemind-8bit")
    cv.add_argument("--variants", metavar="NAME:KEY=VALUE,...;...", help="more runs of our swarm, each with its "
                    "own SwarmOptimizer options, run as ours-NAME (e.g. 'b99:beta=0.99;k64:topk=64')")
    cv.add_argument("--model", default="tiny", choices=MODELS,
                    help="the GPT or Llama preset every method trains, over the corpus's bytes (default: tiny)")
    cv.add_argument("--device", default="cpu", help="where every method trains: cpu (default), cuda, cuda:1, ...")
    cv.add_argument("--out", metavar="PREFIX", help="write PREFIX.json and PREFIX_loss_vs_{step,bytes}.png")
    cv.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    cv.add_argument("--workdir", help="where the swarm nodes' logs go (default: a new temp dir)")
    cv.set_defaults(func=main)


def variants(text: str | None) -> dict[str, dict]:
    """'b99:beta=0.99;k64:topk=64,values=fp16' -> {"b99": {"beta": "0.99"}, "k64": {...}} (the worker types them)."""
    out = {}
    for part in filter(None, (text or "").split(";")):
        name, sep, opts = part.partition(":")
        pairs = [o.partition("=") for o in opts.split(",") if o.strip()]
        if not sep or not name.strip() or not pairs or any(not k.strip() or not eq for k, eq, _ in pairs):
            raise SystemExit(f"--variants: {part!r} is not NAME:key=value[,key=value]")
        out[name.strip()] = {k.strip(): v.strip() for k, _, v in pairs}
    return out


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    lrs = {}
    for part in filter(None, args.lrs.split(";") if args.lrs else []):
        family, _, values = part.partition("=")
        lrs[family.strip()] = [float(v) for v in values.split(",") if v.strip()]
    runs = [m.strip() for m in args.runs.split(",") if m.strip()] if args.runs else None
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()] if args.seeds else None
    try:  # the settings are checked before anything trains; a method that fails is reported in the result
        result = convergence.run(
            nodes=args.nodes, steps=args.steps, global_batch=args.global_batch, windows=args.windows,
            eval_every=args.eval_every, seed=args.seed, lrs=lrs, runs=runs, sweep_steps=args.sweep_steps,
            threads=max(1, args.threads), workdir=args.workdir, seeds=seeds, sweep=args.sweep,
            hivemind_matchmaking=args.hivemind_matchmaking, model=args.model, variants=variants(args.variants),
            device=args.device, sweep_seeds=args.sweep_seeds, warmup=args.warmup)
    except ValueError as exc:
        raise SystemExit(f"python -m benchmarks convergence: {exc}") from None
    text = convergence.format_result(result)
    if args.out:
        result["plots"] = convergence.plot(result, args.out)
        text += "\n\nplots: " + ", ".join(result["plots"])
    emit(result, text, f"{args.out}.json" if args.out else None)
    return 0
