"""A plain user script on the public Python API, for ``python -m benchmarks api``: the built-in GPT on the standard
library's text, the loop a user would write (forward, backward, ``opt.step``, ``opt.zero_grad``), nothing else.

It prints the optimizer's JSON event lines, so the benchmark reads it like a ``demo-node join`` node.
"""

from __future__ import annotations

import argparse
import signal

import torch

import demo_node
from demo_node.data.stream import WindowStream, node_seed
from demo_node.data.tokenizer import byte_tokenizer
from demo_node.data.tokens import open_corpus
from demo_node.models.gpt import PRESETS, build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--peers", nargs="*", default=[])
    p.add_argument("--model", default="tiny", choices=list(PRESETS))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--deadline", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = build(args.model)
    context = PRESETS[args.model].context
    opt = demo_node.SwarmOptimizer(model.parameters(), run_name="bench-api", peers=args.peers, lr=args.lr,
                                   listen=["/ip4/127.0.0.1/tcp/0"], deadline=args.deadline,
                                   reporter=demo_node.Reporter("json"))
    signal.signal(signal.SIGTERM, lambda *_: opt.request_leave())
    batches = WindowStream(open_corpus("stdlib", byte_tokenizer()), context, args.batch_size,
                           node_seed(0, opt.peer.peer_id))
    opt.join()
    while not opt.leave_requested:
        x, y = batches.next()
        loss = model(x, y)
        loss.backward()
        opt.step(samples=args.batch_size, loss=loss.item(), tokens=args.batch_size * context)
        opt.zero_grad(set_to_none=True)
    opt.leave()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
