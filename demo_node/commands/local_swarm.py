"""``demo-node swarm``: N nodes on 127.0.0.1, to try it out, with their progress on one screen."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    swarm = sub.add_parser("swarm", help="start N nodes on 127.0.0.1 and show their progress")
    swarm.add_argument("--nodes", type=int, default=3, help="how many nodes to start (default 3)")
    swarm.add_argument("--rounds", type=int, default=0,
                       help="stop this many rounds after every node has joined (0: run until Ctrl+C)")
    swarm.add_argument("--timeout", type=float, default=0, help="stop after this many seconds (0: never)")
    swarm.add_argument("--workdir", help="where node identities, checkpoints and logs go (default: a new temp dir)")
    swarm.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    swarm.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from demo_node.daemon.launcher import Swarm

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="demo-node-swarm-"))
    extra = list(args.node_args or [])
    print(f"{args.nodes} nodes on 127.0.0.1, state in {workdir}", flush=True)
    return Swarm(args.nodes, workdir, extra).run(args.rounds, timeout=args.timeout)
