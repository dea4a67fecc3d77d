"""The ``demo-node`` command line: one parser that each subcommand's module (``demo_node/commands/``) adds itself to."""

from __future__ import annotations

import argparse
import signal
import sys

DESCRIPTION = """\
Train one model together with other people's GPUs over ordinary internet links (DeMo: decoupled momentum,
compressed to a tiny payload, exchanged over libp2p).

  demo-node join                         found a swarm (prints the address to give others)
  demo-node join --peers /ip4/.../p2p/.. join one
  demo-node swarm --nodes 3              three nodes on this machine, to try it out
  demo-node status                       how a running node is doing (also --leave, --checkpoint, --health)
  demo-node export ckpt/ --out model/    a checkpoint as a Hugging Face model folder

`demo-node <command> --help` lists a command's options."""


def build_parser() -> argparse.ArgumentParser:
    from demo_node.commands import bench, checkpoints, data, join, local_swarm, status

    parser = argparse.ArgumentParser(prog="demo-node", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    join.add_parser(sub)
    status.add_parser(sub)
    local_swarm.add_parser(sub)
    data.add_parser(sub)
    checkpoints.add_parsers(sub)
    bench.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "node_args", None) and args.node_args[0] == "--":
        args.node_args = args.node_args[1:]
    if args.command == "bench":
        # a benchmark killed with SIGTERM still stops the nodes it started (its finally blocks run)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
