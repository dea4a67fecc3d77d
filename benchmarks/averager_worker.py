"""One peer of the dense baseline: hivemind's DecentralizedAverager averaging a GPT's parameters every round.

Run by ``python -m benchmarks swarm`` as a separate process per peer (a second averager in one process stalls). Prints
one JSON line per averaging step and a final summary; NAT port mapping is off and it listens on 127.0.0.1 (or on
the address a benchmark gives it inside a network namespace of its own).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--peers", nargs="*", default=[])
    p.add_argument("--group", type=int, required=True, help="peers per averaging group")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--model", default="tiny")
    p.add_argument("--compression", default="fp16", choices=["fp16", "fp32"])
    p.add_argument("--prefix", default="demo-node-bench")
    p.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    args = p.parse_args(argv)

    import torch
    from hivemind.averaging import DecentralizedAverager
    from hivemind.compression import Float16Compression, NoCompression
    from hivemind.dht import DHT

    from demo_node.models.gpt import build

    torch.set_num_threads(1)
    model = build(args.model)
    tensors = [p.detach().clone() for p in model.parameters()]
    dht = DHT(initial_peers=args.peers or None, host_maddrs=[args.listen], start=True,
              nat_port_map=False, check_if_identity_free=False)
    maddrs = [str(a) for a in dht.get_visible_maddrs()]
    compression = Float16Compression() if args.compression == "fp16" else NoCompression()
    averager = DecentralizedAverager(tensors, dht, prefix=args.prefix, target_group_size=args.group,
                                     min_group_size=args.group, start=True, compression=compression,
                                     min_matchmaking_time=1.0, request_timeout=10.0)
    p2pd_pid = dht.p2p._child.pid if getattr(dht, "p2p", None) is not None and dht.p2p._child else None
    print(json.dumps({"event": "started", "maddrs": maddrs, "dht_pid": dht.pid, "p2pd_pid": p2pd_pid}), flush=True)
    done = 0
    while done < args.rounds:
        began = time.monotonic()
        try:
            result = averager.step(timeout=60)
        except Exception as exc:  # a failed round is reported, not fatal
            result = None
            print(json.dumps({"event": "failed", "error": repr(exc)}), flush=True)
        seconds = time.monotonic() - began
        if result:
            done += 1
            print(json.dumps({"event": "round", "seconds": seconds, "group": len(result)}), flush=True)
    averager.shutdown()
    dht.shutdown()
    print(json.dumps({"event": "done"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
