"""``python -m benchmarks robust``: what robust aggregation costs in convergence, measured side by side.

N peers are simulated in one process with the swarm's exact math and no network: every peer has its own DeMo
momentum and its own stream of batches from the embedded corpus, the shared parameters get the update that the
shard-sign function makes of the peers' contributions (the one owners and relay receivers use), once with robust
aggregation on (weights capped, values clipped to the round's lower median norm) and once off. Same seeds, same data
order, same initial parameters: the only difference is the rule. The held-out loss is measured on a fixed set of
windows (256 by default) every ``eval_every`` steps.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from demo_node.commands.common import emit
from demo_node.core.optimizer import DeMo
from demo_node.data.stream import WindowStream, held_out_windows
from demo_node.data.tokenizer import byte_tokenizer
from demo_node.data.tokens import TokenCorpus, open_corpus
from demo_node.models.gpt import PRESETS, build
from demo_node.swarm.shard_signs import ShardSigns


@torch.no_grad()
def held_out(model, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> float:
    """The mean loss over held-out windows, ``chunk`` at a time."""
    model.eval()
    total = 0.0
    for i in range(0, x.shape[0], chunk):
        total += float(model(x[i : i + chunk], y[i : i + chunk])) * x[i : i + chunk].shape[0]
    model.train()
    return total / x.shape[0]


def train(robust: bool, peers: int, steps: int, model_name: str, batch: int, lr: float, windows: int,
          eval_every: int, seed: int = 0, corpus: TokenCorpus | None = None) -> dict:
    corpus = corpus or open_corpus("stdlib", byte_tokenizer())
    context = PRESETS[model_name].context
    model = build(model_name, seed=seed)
    params = list(model.parameters())
    opts = [DeMo(params, lr=lr) for _ in range(peers)]
    streams = [WindowStream(corpus, context, batch, seed * 1000 + i) for i in range(peers)]
    signs = ShardSigns(opts[0].layout, "selected", robust=robust, max_sample_weight=4096)
    hx, hy = held_out_windows(corpus, context, windows)
    curve = []
    began = time.monotonic()
    for step in range(steps):
        factor = min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        contributions = []
        for opt, stream in zip(opts, streams):
            for g in opt.param_groups:
                g["lr"] = lr * factor
            x, y = stream.next()
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            contributions.append(opt.prepare(samples=batch))
        update = signs.signs(contributions)
        opts[0].apply_signs([(b, start, s) for b, (start, s) in update.items()])
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append((step + 1, held_out(model, hx, hy)))
    return {"robust": robust, "curve": curve, "final": curve[-1][1], "seconds": time.monotonic() - began}


def run(peers: int = 4, steps: int = 200, model: str = "tiny", batch: int = 8, lr: float = 3e-3,
        windows: int = 256, eval_every: int = 25, seed: int = 0) -> dict:
    corpus = open_corpus("stdlib", byte_tokenizer())
    on = train(True, peers, steps, model, batch, lr, windows, eval_every, seed, corpus)
    off = train(False, peers, steps, model, batch, lr, windows, eval_every, seed, corpus)
    return {"peers": peers, "steps": steps, "model": model, "batch": batch, "lr": lr, "windows": windows,
            "seed": seed, "on": on, "off": off, "final_on_over_off": on["final"] / off["final"]}


def format_result(r: dict) -> str:
    lines = [f"{r['peers']} peers simulated in one process, {r['model']} GPT, batch {r['batch']} each, lr {r['lr']} "
             f"(warm-up 20, cosine), {r['steps']} steps, held-out loss on {r['windows']} windows, seed {r['seed']}",
             f"{'step':>6}{'robust on':>12}{'robust off':>12}"]
    for (s, a), (_, b) in zip(r["on"]["curve"], r["off"]["curve"]):
        lines.append(f"{s:>6}{a:>12.4f}{b:>12.4f}")
    lines.append(f"final held-out loss on / off: {r['final_on_over_off']:.4f}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    rb = sub.add_parser("robust", help="what robust aggregation costs in convergence: N peers simulated in one "
                        "process, the same data, the rule on and off")
    rb.add_argument("--peers", type=int, default=4, help="peers simulated in one process (default 4)")
    rb.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    rb.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    rb.add_argument("--batch", type=int, default=8, help="sequences per peer and step")
    rb.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    rb.add_argument("--windows", type=int, default=256, help="held-out windows per evaluation")
    rb.add_argument("--eval-every", type=int, default=25, help="steps between held-out evaluations (default 25)")
    rb.add_argument("--seed", type=int, default=0, help="seed of the model, the data order and the peers' batches")
    rb.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    rb.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    rb.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(peers=args.peers, steps=args.steps, model=args.model, batch=args.batch, lr=args.lr,
                 windows=args.windows, eval_every=args.eval_every, seed=args.seed)
    emit(result, format_result(result), args.json)
    return 0
