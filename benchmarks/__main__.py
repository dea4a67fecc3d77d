"""``python -m benchmarks <name> [options]``: one command line for every benchmark; each adds its own parser."""

from __future__ import annotations

import argparse
import signal
import sys

from benchmarks import (api_bench, convergence_cli, nat_bench, optimizer_bench, robust_bench, scale_model,
                        sparse_return, swarm_bench, wan_bench)

BENCHMARKS = (optimizer_bench, swarm_bench, api_bench, robust_bench, convergence_cli, scale_model, wan_bench,
              sparse_return, nat_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="demo-node's benchmarks: measured side "
                                     "by side in one run, printed as a table and JSON. A volunteer's machine check is "
                                     "`demo-node bench train` / `bench payload`.")
    sub = parser.add_subparsers(dest="bench", required=True)
    for bench in BENCHMARKS:
        bench.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "node_args", None) and args.node_args[0] == "--":
        args.node_args = args.node_args[1:]
    # a benchmark killed with SIGTERM still stops the nodes and namespaces it started (its finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
