"""``demo-node status``: ask a running node, through its local control API, how it is doing (or to checkpoint or
leave)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(sub) -> None:
    status = sub.add_parser("status", help="ask a running node (its local control API) how it is doing")
    status.add_argument("--control", default="",
                        help="host:port of the node's control API (default: the node --peer or --dir names, or the "
                        "only node running here, else $DEMO_NODE_CONTROL, else 127.0.0.1:7070)")
    status.add_argument("--peer", default="", help="the node whose peer id starts or ends with this")
    status.add_argument("--dir", default="", help="the node whose checkpoint folder (or identity file) is here")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--health", action="store_true", help="exit 0 if the node is serving (joining or training)")
    status.add_argument("--checkpoint", action="store_true", help="make the node write a checkpoint now")
    status.add_argument("--leave", action="store_true", help="make the node leave gracefully")
    status.add_argument("--timeout", type=float, default=10, help="seconds to wait for the node's answer (default 10)")
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import grpc

    from demo_node.node import control
    from demo_node.node.events import jsonable
    from demo_node.node.states import NodeState

    args.control = control_address(args)
    try:
        if args.health:
            ok = control.healthy(args.control, timeout=args.timeout)
            print("SERVING" if ok else "NOT_SERVING")
            return 0 if ok else 1
        if args.checkpoint:
            reply = control.checkpoint(args.control)
            print(f"checkpoint after round {reply.round}: {reply.path or '(no checkpoint directory)'}")
            return 0
        if args.leave:
            print(f"node is {NodeState(control.leave(args.control).state).label}")
            return 0
        reply = control.status(args.control, timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"demo-node status: no node answers on {args.control} ({exc.code().name})", file=sys.stderr)
        return 1
    # every field with its own type (protobuf's JSON mapping writes 64-bit integers as strings), NaN as null
    info = {f.name: list(getattr(reply, f.name)) if f.is_repeated else getattr(reply, f.name)
            for f in reply.DESCRIPTOR.fields}
    info["state"] = NodeState(reply.state).label if reply.state else "unknown"
    if args.json:
        print(json.dumps(jsonable(info), indent=2))
    else:
        for key, value in info.items():
            print(f"{key:<16}{value}")
    return 0


def control_address(args: argparse.Namespace) -> str:
    """The control API to ask: --control, else the running node that --peer / --dir pick (or the only one running
    here), else $DEMO_NODE_CONTROL, else the default address."""
    from demo_node.node import registry
    from demo_node.node.control import DEFAULT_ADDRESS

    if args.control:
        return args.control
    picked = bool(args.peer or args.dir)
    if not picked and os.environ.get("DEMO_NODE_CONTROL"):
        return os.environ["DEMO_NODE_CONTROL"]
    found = registry.find(args.peer, args.dir)
    if len(found) == 1:
        return found[0].control
    listing = "".join(f"\n  {e.peer_id}  control {e.control}  pid {e.pid}  {' '.join(e.folders)}" for e in found)
    if len(found) > 1:
        raise SystemExit(f"demo-node status: {len(found)} nodes run here{' that match' if picked else ''}: pick one "
                         f"with --peer (the end of its peer id) or --dir (its checkpoint folder):{listing}")
    if picked:
        what = " and ".join(x for x in (args.peer and f"peer id {args.peer!r}", args.dir and f"folder {args.dir!r}") if x)
        raise SystemExit(f"demo-node status: no node running here matches {what}")
    return DEFAULT_ADDRESS
