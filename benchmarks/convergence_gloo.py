"""One rank of ``python -m benchmarks convergence``'s runs over torch.distributed (gloo, 127.0.0.1): ``adamw-dense`` or
``reference``.

Rank ``index`` of ``nodes`` draws its batches from ``WindowStream(corpus, context, batch, seed * 1000 + index)``,
as every other method's worker ``index`` does.
- ``--method dense``: each step it all-reduces its flat fp32 gradient, divides by N (the global batch's gradient)
  and takes a torch AdamW step, so every rank holds the parameters that single-process AdamW on the global batch
  would.
- ``--method reference``: the reference DeMo as written: each rank keeps its own momentum, takes the top-k of its
  chunked DCT (int64 indices, fp32 values), all-gathers every rank's (indices, values), and every rank decodes the
  concatenation and takes the same sign step; the same computation as ``reference-sim``'s N workers in one process.
Bytes are measured at the wire: the TCP bytes of this process's sockets (``ss``), from the first step on, read at
every evaluation while all ranks are connected.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--port", type=int, required=True, help="rank 0's TCP store port on 127.0.0.1")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="tiny", help="a GPT or Llama preset (convergence_model.MODELS)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--method", choices=["dense", "reference"], default="dense")
    args = p.parse_args(argv)

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pairs on loopback only
    import torch.distributed as dist

    from benchmarks.convergence import schedule_factor
    from benchmarks.robust_bench import held_out
    from benchmarks.swarm_bench import wire_bytes
    from demo_node.data.stream import WindowStream, held_out_windows
    from demo_node.data.tokenizer import byte_tokenizer
    from demo_node.data.tokens import open_corpus
    from benchmarks.convergence_model import context_of, make, on

    torch.set_num_threads(args.threads)
    context = context_of(args.model)
    corpus = open_corpus("stdlib", byte_tokenizer())
    model = make(args.model, args.seed, args.device)
    params = [q for q in model.parameters() if q.requires_grad]
    step = _dense_step(params, args) if args.method == "dense" else _reference_step(params, args)
    stream = WindowStream(corpus, context, args.batch, args.seed * 1000 + args.index)
    hx, hy = on(args.device, *held_out_windows(corpus, context, args.windows)) if args.index == 0 else (None, None)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.index,
                            world_size=args.nodes)
    print(json.dumps({"event": "started", "index": args.index, "pid": os.getpid()}), flush=True)
    dist.barrier()
    me = os.getpid()
    wire0 = wire_bytes({me})[me]
    began = time.monotonic()

    def wire() -> dict:
        now = wire_bytes({me})[me]
        return {"bytes_sent": now["sent"] - wire0["sent"], "bytes_received": now["received"] - wire0["received"]}

    for i in range(args.steps):
        model.zero_grad(set_to_none=True)
        x, y = on(args.device, *stream.next())
        model(x, y).backward()
        step(args.lr * schedule_factor(i, args.steps, args.warmup))
        if (i + 1) % args.eval_every == 0 or i + 1 == args.steps:
            line = {"event": "curve", "index": args.index, "step": i + 1, "seconds": time.monotonic() - began,
                    **wire()}
            if hx is not None:
                line["loss"] = held_out(model, hx, hy)
            print(json.dumps(line), flush=True)
    print(json.dumps({"event": "finished", "index": args.index, "steps": args.steps,
                      "seconds": time.monotonic() - began, **wire()}), flush=True)
    dist.barrier()  # nobody closes its sockets before every rank has read its bytes
    dist.destroy_process_group()
    return 0


def _dense_step(params: list[torch.Tensor], args):
    """AdamW on the mean of the ranks' gradients: one all_reduce of the flat fp32 gradient."""
    import torch.distributed as dist

    opt = torch.optim.AdamW(params, lr=args.lr)

    def step(lr: float) -> None:
        for g in opt.param_groups:
            g["lr"] = lr
        flat = torch.cat([q.grad.reshape(-1) for q in params])
        dist.all_reduce(flat)
        flat /= args.nodes
        offset = 0
        for q in params:
            q.grad.copy_(flat[offset : offset + q.numel()].view_as(q))
            offset += q.numel()
        opt.step()

    return step


def _reference_step(params: list[torch.Tensor], args):
    """The reference DeMo's step: this rank's top-k (int64 indices, fp32 values) all-gathered, the same sign step on
    every rank (``ReferenceWorkers`` with this rank as its one worker: the code ``reference-sim`` runs)."""
    import torch.distributed as dist

    from benchmarks.convergence import ReferenceWorkers

    mine = ReferenceWorkers(params, 1)

    def gathered(t: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(t) for _ in range(args.nodes)]
        dist.all_gather(out, t)
        return out

    def step(lr: float) -> None:
        payload, _ = mine.prepare(0, lr)
        # every rank's top-k has the same shapes: two all_gathers of the flat indices and values carry them all
        idx = gathered(torch.cat([i.reshape(-1) for i, _, _ in payload]))
        val = gathered(torch.cat([v.reshape(-1) for _, v, _ in payload]))
        payloads = []
        for r in range(args.nodes):
            offset, parts = 0, []
            for i, v, shape in payload:
                n = i.numel()
                parts.append((idx[r][offset : offset + n].view_as(i), val[r][offset : offset + n].view_as(v), shape))
                offset += n
            payloads.append(parts)
        mine.apply(payloads, lr)

    return step


if __name__ == "__main__":
    raise SystemExit(main())
