"""``demo-node join``: run one node, from flags, ``DEMO_NODE_*`` and a TOML file, until it leaves."""

from __future__ import annotations

import argparse
import os
import sys

from demo_node.commands.common import EXIT_FORCED, EXIT_START_FAILED, EXIT_USAGE, quiet_libraries


def add_parser(sub) -> None:
    from demo_node.daemon import settings

    join = sub.add_parser("join", help="run a node: found a swarm, or join one with --peers",
                          description="Every option also comes from DEMO_NODE_<NAME> or a TOML file (--config); "
                          "flags win over the environment, which wins over the file.")
    settings.add_flags(join)
    join.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    quiet_libraries()
    from demo_node.daemon import settings
    from demo_node.daemon.program import JoinProgram
    from demo_node.errors import DemoNodeError
    from demo_node.node.events import Reporter, configure_logging

    try:
        cfg = settings.load(vars(args), config_file=args.config)
    except settings.ConfigError as exc:
        print(f"demo-node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reporter = Reporter(cfg.log.log_format)
    configure_logging(reporter, getattr(logging, cfg.log.log_level.upper()))
    program = JoinProgram(cfg, reporter)
    signals = []

    def on_signal(signum, frame):
        signals.append(signum)
        if len(signals) == 1:
            program.request_leave()  # finish the round, checkpoint, leave the DHT
        else:
            os._exit(EXIT_FORCED)  # a second signal: leave now

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        program.start()
    except (DemoNodeError, ValueError, FileNotFoundError, MemoryError) as exc:
        # MemoryError: the model's estimate does not fit the device (it says why)
        print(f"demo-node: {exc}", file=sys.stderr)
        program.close()
        return EXIT_START_FAILED
    try:
        return program.run()
    finally:
        program.close()
