"""One rank of ``demo-node bench convergence``'s ``adamw-dense`` run: AdamW on gradients all-reduced over gloo.

Rank ``index`` of ``nodes`` draws its batches from ``WindowStream(corpus, context, batch, seed * 1000 + index)``,
as every other method's worker ``index`` does. Each step it all-reduces its flat fp32 gradient (torch.distributed,
gloo, 127.0.0.1), divides by N (the global batch's gradient) and takes a torch AdamW step, so every rank holds the
parameters that single-process AdamW on the global batch would. Bytes are measured at the wire: the TCP bytes of
this process's sockets (``ss``), from the first step on, read at every evaluation while all ranks are connected.
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
    args = p.parse_args(argv)

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pairs on loopback only
    import torch.distributed as dist

    from demo_node.bench.convergence import schedule_factor
    from demo_node.bench.robust_bench import held_out
    from demo_node.bench.swarm_bench import wire_bytes
    from demo_node.data.stream import WindowStream, held_out_windows
    from demo_node.data.tokenizer import byte_tokenizer
    from demo_node.data.tokens import open_corpus
    from demo_node.bench.convergence_model import context_of, make, on

    torch.set_num_threads(args.threads)
    context = context_of(args.model)
    corpus = open_corpus("stdlib", byte_tokenizer())
    model = make(args.model, args.seed, args.device)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
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

    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * schedule_factor(step, args.steps, args.warmup)
        opt.zero_grad(set_to_none=True)
        x, y = on(args.device, *stream.next())
        model(x, y).backward()
        flat = torch.cat([q.grad.reshape(-1) for q in params])
        dist.all_reduce(flat)
        flat /= args.nodes
        offset = 0
        for q in params:
            q.grad.copy_(flat[offset : offset + q.numel()].view_as(q))
            offset += q.numel()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            line = {"event": "curve", "index": args.index, "step": step + 1, "seconds": time.monotonic() - began,
                    **wire()}
            if hx is not None:
                line["loss"] = held_out(model, hx, hy)
            print(json.dumps(line), flush=True)
    print(json.dumps({"event": "finished", "index": args.index, "steps": args.steps,
                      "seconds": time.monotonic() - began, **wire()}), flush=True)
    dist.barrier()  # nobody closes its sockets before every rank has read its bytes
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
