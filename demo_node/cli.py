"""The ``demo-node`` command line: parse, then call the component that does the work."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_USAGE = 2


def _bench_optimizer(args: argparse.Namespace) -> int:
    import torch

    from demo_node.bench import optimizer_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    result = optimizer_bench.run(
        preset=args.preset,
        device=args.device,
        iters=args.iters,
        batch=args.batch,
        values=args.values,
        skip_reference=args.skip_reference,
    )
    _emit(result, optimizer_bench.format_result(result), args.json)
    return 0


def _bench_payload(args: argparse.Namespace) -> int:
    from demo_node.bench import payload_size

    results = [payload_size.payload_sizes(args.model, k, args.chunk) for k in args.topk]
    text = "\n\n".join(payload_size.format_sizes(r) for r in results)
    _emit(results if len(results) > 1 else results[0], text, args.json)
    return 0


def _emit(result, text: str, json_path: str | None) -> None:
    print(text)
    if json_path == "-":
        print(json.dumps(result, indent=2))
    elif json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nJSON written to {json_path}")


def build_parser() -> argparse.ArgumentParser:
    from demo_node.bench.payload_size import MODELS
    from demo_node.core.quantize import VALUE_MODES
    from demo_node.models.gpt import PRESETS

    parser = argparse.ArgumentParser(prog="demo-node", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks: measured side by side, printed as a table and JSON")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    opt = bench_sub.add_parser("optimizer", help="step time and payload bytes: our DeMo, the reference, AdamW")
    opt.add_argument("--preset", default="bench", choices=sorted(PRESETS), help="GPT size (default: bench, 10.9M)")
    opt.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    opt.add_argument("--iters", type=int, default=10, help="timed calls per figure (median reported)")
    opt.add_argument("--batch", type=int, default=8, help="sequences per forward/backward")
    opt.add_argument("--values", default="int8", choices=VALUE_MODES, help="value precision of our payload")
    opt.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    opt.add_argument("--skip-reference", action="store_true", help="do not time the reference re-statement")
    opt.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    opt.set_defaults(func=_bench_optimizer)

    pay = bench_sub.add_parser("payload", help="payload bytes per step for a model's shapes: reference vs ours")
    pay.add_argument("--model", default="olmo-1b", choices=sorted(MODELS))
    pay.add_argument("--topk", type=int, nargs="+", default=[32], help="coefficients kept per block")
    pay.add_argument("--chunk", type=int, default=64)
    pay.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    pay.set_defaults(func=_bench_payload)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
