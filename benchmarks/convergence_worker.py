"""One node of ``python -m benchmarks convergence``'s swarm runs: the tiny GPT trained by ``demo_node.SwarmOptimizer``.

Worker ``index`` of ``nodes`` draws its batches from ``WindowStream(corpus, context, batch, seed * 1000 + index)``,
the stream every other method of the benchmark gives worker ``index``, so the data order is the same. It waits
until all ``nodes`` are members, then takes ``steps`` steps (one swarm round each). Every ``eval_every`` steps (and
at the end) it prints a ``curve`` line with this node's bytes sent since training began (its own accounting: what
it wrote to streams) and, on worker 0 only, the held-out loss on ``held_out_windows(corpus, context, windows)``.
The lr schedule is keyed to the swarm's round (as ``demo-node join``'s is), counted from the round training starts
at (the first node runs rounds alone until the others are members). Beside its own accounting it reads its bytes
at the wire (``ss``: the TCP bytes of its p2pd) and, with ``--stop-file``, stays in the swarm after its last step
until that file exists, so every node reads its wire bytes while all are still connected.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import torch


def typed(value: str) -> object:
    """An option's value as given in text (``--option``, ``--variants``): an int, a float, a bool or the text."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, typed(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--peers", nargs="*", default=[])
    p.add_argument("--batch", type=int, required=True, help="sequences per node and step")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--model", default="tiny", help="a GPT or Llama preset (convergence_model.MODELS)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a SwarmOptimizer option (topk=8, values=fp16, beta=0.99, ...), repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--deadline", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--run-name", default="bench-convergence")
    p.add_argument("--stop-file", help="after the last step, wait for this file before leaving")
    p.add_argument("--start-file", required=True,
                   help="where the bench writes the swarm round training starts at (the lr schedule's step 0), the "
                   "same for every node, once every node is a member")
    args = p.parse_args(argv)

    import demo_node
    from benchmarks.convergence import held_out, schedule_factor
    from benchmarks.swarm_bench import wire_bytes
    from demo_node.data.stream import WindowStream, held_out_windows
    from demo_node.data.tokenizer import byte_tokenizer
    from demo_node.data.tokens import open_corpus
    from benchmarks.convergence_model import context_of, make, on

    torch.set_num_threads(args.threads)
    context = context_of(args.model)
    corpus = open_corpus("stdlib", byte_tokenizer())
    model = make(args.model, args.seed, args.device)
    stream = WindowStream(corpus, context, args.batch, args.seed * 1000 + args.index)
    hx, hy = on(args.device, *held_out_windows(corpus, context, args.windows)) if args.index == 0 else (None, None)
    # every node applies every round's update with its own lr, so the schedule's origin must be the same round on
    # every node before any contributes: the bench writes it to --start-file once all N are members (a round each
    # node picked when it saw all N members differed by a round between nodes on a loaded machine, and those nodes'
    # digests then parted at every round)
    offset = [sys.maxsize]  # until the start round is known no round has an lr of its own (nothing is contributed)
    options = dict(_option(o) for o in args.option)
    opt = demo_node.SwarmOptimizer(
        model.parameters(), run_name=args.run_name, peers=args.peers, lr=args.lr, listen=["/ip4/127.0.0.1/tcp/0"],
        deadline=args.deadline, reporter=demo_node.Reporter("json"),
        scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(
            o, lambda r: schedule_factor(max(0, r - offset[0]), args.steps, args.warmup)),
        **options)
    signal.signal(signal.SIGTERM, lambda *_: opt.request_leave())
    opt.join()
    start_file = Path(args.start_file)
    while not opt.leave_requested:
        if offset[0] == sys.maxsize and start_file.exists():
            offset[0] = int(start_file.read_text())
        if opt.round >= offset[0]:
            break
        # wait_round applies every round that ends within its timeout: once the start is known, a short one, or a
        # round that closes soon after the one before it (the others contribute to it) would go by uncontributed
        opt.wait_round(timeout=0.2 if offset[0] == sys.maxsize else 0.05)
    first_round = opt.round  # the start round, or a round or two later on a node that looked late
    sent0 = opt.peer.accounting.totals()["sent"]
    pid = opt.peer.p2pd_pid
    wire0 = wire_bytes({pid})[pid]
    began = time.monotonic()

    def wire() -> dict:
        now = wire_bytes({pid})[pid]
        return {"wire_sent": now["sent"] - wire0["sent"], "wire_received": now["received"] - wire0["received"]}

    def report(step: int) -> None:
        line = {"event": "curve", "index": args.index, "step": step, "round": opt.round,
                "bytes_sent": opt.peer.accounting.totals()["sent"] - sent0, "seconds": time.monotonic() - began,
                **wire()}
        if hx is not None:
            line["loss"] = held_out(model, hx, hy)
        print(json.dumps(line), flush=True)

    step = 0
    while step < args.steps and not opt.leave_requested:
        x, y = on(args.device, *stream.next())
        loss = model(x, y)
        loss.backward()
        opt.step(samples=args.batch, loss=loss.item(), tokens=args.batch * context)
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.eval_every == 0 or step == args.steps:
            report(step)
    print(json.dumps({"event": "finished", "index": args.index, "steps": step, "first_round": first_round,
                      "rounds_applied": opt.rounds_applied, "members": opt.members,
                      "bytes_sent": opt.peer.accounting.totals()["sent"] - sent0,
                      "seconds": time.monotonic() - began, **wire()}), flush=True)
    while args.stop_file and not Path(args.stop_file).exists() and not opt.leave_requested:
        time.sleep(0.2)
    opt.leave()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
