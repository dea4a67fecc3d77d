"""``demo-node bench train`` and ``bench payload``: what a volunteer runs to check a machine before joining (a round
of a real model here, and the bytes a model's payload takes). The research benchmarks live in ``benchmarks/``."""

from __future__ import annotations

import argparse

from demo_node.commands.common import emit, quiet_libraries


def add_parser(sub) -> None:
    from demo_node.models.presets import MODEL_CHOICES, PRESETS, SHAPES_ONLY

    bench = sub.add_parser("bench", help="check this machine: a round of a real model, a model's payload bytes",
                           description="The research benchmarks (swarm, convergence, wan, ...) run from a checkout: "
                           "python -m benchmarks --help")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    tr = bench_sub.add_parser("train", help="a round of a real model: forward+backward, the DeMo step, memory "
                              "(estimate vs peak), MFU on a GPU; then N nodes: tokens/s and where a round goes")
    tr.add_argument("--model", default="llama-20m", choices=MODEL_CHOICES[:-1],
                    help="a Llama or GPT preset (default: llama-20m)")
    tr.add_argument("--batch", type=int, default=8, help="sequences per forward+backward (default 8)")
    tr.add_argument("--context", type=int, default=128, help="tokens per sequence (0: the preset's; default 128)")
    tr.add_argument("--vocab", type=int, default=8192, help="vocabulary of a Llama preset (a BPE of this size "
                    "in the swarm part; default 8192)")
    tr.add_argument("--iters", type=int, default=5, help="timed calls per figure (median)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda[:n] (the one-node part)")
    tr.add_argument("--threads", type=int, default=0, help="torch CPU threads of the one-node part")
    tr.add_argument("--nodes", type=int, default=2, help="nodes of the swarm part (0: skip it)")
    tr.add_argument("--rounds", type=int, default=10, help="measured rounds of the swarm part")
    tr.add_argument("--workdir", help="where the swarm part's logs go (default: a new temp dir)")
    tr.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    tr.set_defaults(func=train)

    pay = bench_sub.add_parser("payload", help="payload bytes per step for a model's shapes: reference vs ours")
    pay.add_argument("--model", default="olmo-1b", choices=[*PRESETS, *SHAPES_ONLY],
                     help="a GPT preset or the paper's OLMo-1B (default: olmo-1b)")
    pay.add_argument("--topk", type=int, nargs="+", default=[32], help="coefficients kept per block")
    pay.add_argument("--chunk", type=int, default=64, help="DCT chunk size (default 64: 64x64 blocks)")
    pay.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    pay.set_defaults(func=payload)


def train(args: argparse.Namespace) -> int:
    quiet_libraries()
    from demo_node.bench import train_bench

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = train_bench.run(model=args.model, batch=args.batch, context=args.context, vocab=args.vocab,
                             iters=args.iters, device=args.device, nodes=args.nodes, rounds=args.rounds,
                             workdir=args.workdir)
    emit(result, train_bench.format_result(result), args.json)
    return 0


def payload(args: argparse.Namespace) -> int:
    from demo_node.bench import payload_size

    results = [payload_size.payload_sizes(args.model, k, args.chunk) for k in args.topk]
    text = "\n\n".join(payload_size.format_sizes(r) for r in results)
    emit(results if len(results) > 1 else results[0], text, args.json)
    return 0
