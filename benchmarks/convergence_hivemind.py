"""One peer of ``python -m benchmarks convergence``'s hivemind runs: the tiny GPT trained by ``hivemind.Optimizer``.

Worker ``index`` of ``nodes`` draws its batches from ``WindowStream(corpus, context, batch, seed * 1000 + index)``,
as every other method's worker ``index`` does. Its own ``hivemind.DHT`` listens on 127.0.0.1 with NAT port mapping
off; the inner optimizer is torch AdamW; ``target_batch_size`` is the global batch, so one hivemind epoch is one
step of the other methods (the lr schedule is keyed to the epoch). Synchronous settings from hivemind's docs:
``use_local_updates=False``, no delayed gradient averaging or optimizer step, groups of exactly ``nodes`` peers.
All peers wait for each other (a DHT key) before the first step. Bytes are measured at the wire: the TCP bytes of
this peer's p2pd daemon (``ss``), from the first step on, read at every evaluation and once more at the end while
every peer is still connected (a peer leaves only when the benchmark creates ``--stop-file``).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import torch


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--peers", nargs="*", default=[])
    p.add_argument("--batch", type=int, required=True, help="sequences per peer and local step")
    p.add_argument("--steps", type=int, required=True, help="hivemind epochs (global steps)")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--compression", choices=["none", "8bit"], default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="tiny", help="a GPT or Llama preset (convergence_model.MODELS)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--matchmaking-time", type=float, default=1.0)
    p.add_argument("--averaging-timeout", type=float, default=15.0, help="hivemind's docs: about 2x an all-reduce")
    p.add_argument("--next-chunk-timeout", type=float, default=5.0,
                   help="hivemind's default is matchmaking_time: at 1 s, under load, reducers gave up on the other "
                   "peer's part and averaged half the tensors (warnings 'received 50.0%% of input tensors')")
    p.add_argument("--run-id", default="bench-convergence-hivemind")
    p.add_argument("--stop-file", required=True)
    p.add_argument("--verbose", action="store_true", help="hivemind's progress log on stderr")
    args = p.parse_args(argv)

    import hivemind
    from hivemind.compression import NoCompression, Uniform8BitQuantization
    from hivemind.optim.grad_averager import GradientAverager
    from hivemind.utils import get_dht_time

    from benchmarks.convergence import schedule_factor
    from benchmarks.robust_bench import held_out
    from benchmarks.swarm_bench import children_named, wire_bytes
    from demo_node.data.stream import WindowStream, held_out_windows
    from demo_node.data.tokenizer import byte_tokenizer
    from demo_node.data.tokens import open_corpus
    from benchmarks.convergence_model import context_of, make, on

    torch.set_num_threads(args.threads)
    context = context_of(args.model)
    corpus = open_corpus("stdlib", byte_tokenizer())
    model = make(args.model, args.seed, args.device)
    params = [q for q in model.parameters() if q.requires_grad]
    stream = WindowStream(corpus, context, args.batch, args.seed * 1000 + args.index)
    hx, hy = on(args.device, *held_out_windows(corpus, context, args.windows)) if args.index == 0 else (None, None)

    dht = hivemind.DHT(initial_peers=args.peers or None, host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True,
                       nat_port_map=False, check_if_identity_free=False)
    p2pd = children_named(dht.pid, "p2pd")  # the DHT's process owns the daemon that all of this peer's traffic uses
    if len(p2pd) != 1:
        raise RuntimeError(f"expected one p2pd under the DHT process {dht.pid}, found {p2pd}")
    print(json.dumps({"event": "started", "maddrs": [str(a) for a in dht.get_visible_maddrs()],
                      "p2pd_pid": p2pd[0]}), flush=True)
    compression = Uniform8BitQuantization() if args.compression == "8bit" else NoCompression()
    # every epoch averages all N peers; request_timeout below matchmaking_time, as hivemind's matchmaking asks
    group = {"target_group_size": args.nodes, "min_group_size": args.nodes,
             "request_timeout": min(3.0, 0.75 * args.matchmaking_time)}
    opt = hivemind.Optimizer(
        dht=dht, run_id=args.run_id, target_batch_size=args.batch * args.nodes, batch_size_per_step=args.batch,
        params=params, optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr),
        scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(
            o, lambda e: schedule_factor(e, args.steps, args.warmup)),
        matchmaking_time=args.matchmaking_time, averaging_timeout=args.averaging_timeout,
        next_chunk_timeout=args.next_chunk_timeout,
        use_local_updates=False, delay_grad_averaging=False, delay_optimizer_step=False, offload_optimizer=False,
        delay_state_averaging=False,
        # with gradients averaged over all peers every epoch the parameters stay equal; state averaging would only
        # repair drift, so it runs never within the run (the setting that sends the fewest bytes for hivemind)
        average_state_every=args.steps + 1,
        grad_compression=compression, state_averaging_compression=compression,
        grad_averager_factory=functools.partial(GradientAverager, **group), averager_opts=group,
        # peers see each other's progress within 0.1 s (defaults: 0.5-10 s), so an epoch closes when all N reported
        tracker_opts={"min_refresh_period": 0.05, "max_refresh_period": 0.5, "default_refresh_period": 0.1},
        verbose=args.verbose)

    # a barrier: nobody steps before all N peers have an optimizer (a lone first peer would fill an epoch alone)
    key = f"{args.run_id}_ready"
    dht.store(key, subkey=args.index, value=True, expiration_time=get_dht_time() + 3600)
    while True:
        found = dht.get(key, latest=True)
        if found is not None and len(found.value) >= args.nodes:
            break
        time.sleep(0.2)

    def swarm_has_the_epoch() -> bool:
        """The epoch's samples have been reported by the swarm (not hivemind's ETA estimate: that one fires early)."""
        progress = opt.tracker.global_progress
        return opt.tracker.global_epoch > opt.local_epoch or progress.samples_accumulated >= args.batch * args.nodes

    pid = p2pd[0]
    wire0 = wire_bytes({pid})[pid]
    began = time.monotonic()
    local_steps = 0

    def wire() -> dict:
        now = wire_bytes({pid})[pid]
        return {"bytes_sent": now["sent"] - wire0["sent"], "bytes_received": now["received"] - wire0["received"]}

    epoch = opt.local_epoch
    epochs_seen = []
    while opt.local_epoch < args.steps:
        x, y = on(args.device, *stream.next())
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        local_steps += 1
        # synchronous: one batch per peer and epoch. Until the swarm has the epoch's samples, poll with an empty
        # contribution (zero gradients, batch_size=0: nothing added) instead of drawing another batch, which is what
        # hivemind does by itself when a peer sees the others' progress late (up to 2 batches per epoch here)
        while opt.local_epoch == epoch:
            time.sleep(0.02)
            if not swarm_has_the_epoch():
                continue  # a step now could close the epoch on hivemind's time estimate alone, without the others
            for q in params:
                q.grad = torch.zeros_like(q)
            opt.step(batch_size=0)
            opt.zero_grad()
        if opt.local_epoch != epoch:
            epochs_seen.append(opt.local_epoch - epoch)
            epoch = opt.local_epoch
            if epoch % args.eval_every == 0 or epoch >= args.steps:
                line = {"event": "curve", "index": args.index, "step": epoch, "local_steps": local_steps,
                        "seconds": time.monotonic() - began, **wire()}
                if hx is not None:
                    line["loss"] = held_out(model, hx, hy)
                print(json.dumps(line), flush=True)
    print(json.dumps({"event": "finished", "index": args.index, "steps": opt.local_epoch, "local_steps": local_steps,
                      "epoch_jumps": sum(j != 1 for j in epochs_seen), "seconds": time.monotonic() - began,
                      **wire()}), flush=True)
    while not Path(args.stop_file).exists():  # stay connected until every peer has read its bytes
        time.sleep(0.2)
    opt.shutdown()
    dht.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run, then end hivemind's own processes (DHT, averagers) by pid: a peer that fails or is stopped would
    otherwise leave them behind, or hang at exit waiting for them."""
    def stop(*_):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)
    code = 1
    try:
        code = _main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported, then the children are ended all the same
        traceback.print_exc()
    finally:
        children = multiprocessing.active_children()
        for child in children:
            child.terminate()  # SIGTERM: the DHT process stops its p2pd
        for child in children:
            child.join(3)
            if child.is_alive():
                child.kill()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
