"""``demo-node bench train``: what a round of a real model costs, one node alone and in a swarm.

One process: forward+backward, the DeMo step and AdamW's beside it on the same model and gradients (medians), the
tokens per second of a node that did nothing else, the DeMo step as a share of forward+backward, the memory
estimate against the measured peak (:mod:`demo_node.models.peak`), and on a GPU the model FLOPs utilisation.
Then ``nodes`` ``demo-node join`` processes train the same model on this machine: from their round lines, tokens
per second per node and the share of a round spent in forward+backward (``compute_s``), in the optimizer
(``optimizer_s``: preparing the contribution and applying the round) and in the exchange (the rest of the cycle).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from demo_node.bench.timing import forward_backward_on_random_tokens, median_ms
from demo_node.core.optimizer import DeMo
from demo_node.daemon.children import NodeProcess, join_command, stop_all
from demo_node.models.memory import estimate
from demo_node.models.peak import measure
from demo_node.models.presets import PRESETS
from demo_node.models.spec import build_model, default_context, model_spec, spec_parameter_count

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}
"""Dense bf16 tensor-core peaks (no sparsity) by device-name fragment, for the model FLOPs utilisation."""


def _flops_per_token(spec: dict, context: int) -> float:
    """Training FLOPs per token: 6 per parameter (forward + backward) plus the attention scores' 12 * layers *
    width * context (the PaLM paper's accounting)."""
    cfg = spec["config"]
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer", 0))
    width = cfg.get("hidden_size", cfg.get("d_model", 0))
    return 6 * spec_parameter_count(spec) + 12 * layers * width * context


def one_node(model: str, batch: int, context: int, vocab: int, iters: int, device: str) -> dict:
    dev = torch.device(device)
    spec = model_spec(model, None, 256 if model in PRESETS else vocab, context)
    context = context or default_context(spec)
    net = build_model(spec, dev)
    params = sum(p.numel() for p in net.parameters())
    vocab_size = spec["config"].get("vocab_size", spec["config"].get("vocab"))
    fwd_bwd = forward_backward_on_random_tokens(net, vocab_size, batch, context, dev)

    ms = {"forward_backward": median_ms(fwd_bwd, iters, dev, warmup=1)}
    fwd_bwd()
    demo = DeMo(list(net.parameters()), lr=1e-4)
    ms["demo_step"] = median_ms(demo.step, iters, dev)
    del demo
    adamw = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    ms["adamw_fused_step"] = median_ms(adamw.step, iters, dev)
    del adamw
    seconds = (ms["forward_backward"] + ms["demo_step"]) / 1e3
    out = {"model": model, "params": params, "batch": batch, "context": context, "vocab": vocab_size,
           "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
           "threads": torch.get_num_threads(), "iters": iters, "ms": ms,
           "tokens_per_s_alone": batch * context / seconds,
           "demo_step_over_forward_backward": ms["demo_step"] / ms["forward_backward"]}
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
        achieved = _flops_per_token(spec, context) * batch * context / seconds
        out["model_flops_per_s"] = achieved
        out["mfu_bf16"] = achieved / peak if peak else None
    need = estimate(spec, batch, context, autocast_bf16=dev.type == "cuda")
    measured = measure(spec, batch, context, autocast_bf16=dev.type == "cuda", device=str(dev),
                       threads=torch.get_num_threads())
    out["memory"] = {"estimate": need.total, "measured_peak": measured["peak"],
                     "estimate_over_peak": need.total / measured["peak"], "parts": need.as_dict()}
    return out


def swarm(model: str, nodes: int, batch: int, context: int, vocab: int, rounds: int, workdir: Path) -> dict:
    """``nodes`` join processes on this machine; figures from the round lines of ``rounds`` rounds in which all
    were members."""
    run = ["--model", model, "--batch-size", str(batch), "--threads", "1", "--eval-every", "0",
           "--lr-schedule", "constant", "--warmup-rounds", "0", "--min-members", str(nodes),
           "--listen", "/ip4/127.0.0.1/tcp/0", "--control", "127.0.0.1:0"]
    if context:
        run += ["--context", str(context)]
    if model not in PRESETS:  # a BPE of this vocabulary, trained on the first 8 MB of the stdlib by every node
        run += ["--tokenizer", "bpe", "--bpe-vocab", str(vocab), "--data-bytes", str(8 * 2**20)]
    procs: list[NodeProcess] = []
    try:
        first = NodeProcess(join_command(run), workdir / "node-0", name="node 0")
        procs.append(first)
        first.wait_started(600)
        for i in range(1, nodes):
            procs.append(NodeProcess(join_command([*run, "--peers", *first.maddrs]), workdir / f"node-{i}",
                                     name=f"node {i}"))
        for p in procs:
            p.wait(lambda p=p: any(e["members"] == nodes for e in p.rounds()), 900, f"{nodes} members")
        begun = max(p.last_round() for p in procs) + 1
        t0 = time.monotonic()
        for p in procs:
            p.wait_round(begun + rounds, 600 + 60 * rounds)
        wall = time.monotonic() - t0
        window = [e for p in procs for e in p.rounds()
                  if begun < e["round"] <= begun + rounds and e["members"] == nodes and e["contributed"]
                  and e.get("tokens_per_s")]
        if not window:
            raise RuntimeError("no round in which every node contributed: see the logs in " + str(workdir))
        cycles = [e["tokens"] / e["tokens_per_s"] for e in window]
        cycle = statistics.median(cycles)
        compute = statistics.median(e["compute_s"] for e in window)
        optimizer = statistics.median(e["optimizer_s"] for e in window)
        return {"nodes": nodes, "rounds": rounds, "round_seconds_wall": wall / rounds, "cycle_seconds": cycle,
                "tokens_per_s_per_node": statistics.median(e["tokens_per_s"] for e in window),
                "share": {"forward_backward": compute / cycle, "optimizer": optimizer / cycle,
                          "exchange_and_waiting": max(0.0, 1 - (compute + optimizer) / cycle)},
                "rounds_counted": len(window)}
    finally:
        stop_all(procs, grace=60)
        for p in procs:
            p.close()


def run(model: str = "llama-20m", batch: int = 8, context: int = 128, vocab: int = 8192, iters: int = 5,
        device: str = "cpu", nodes: int = 2, rounds: int = 10, workdir: str | None = None) -> dict:
    result = {"one_node": one_node(model, batch, context, vocab, iters, device)}
    if nodes > 0:
        root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-train-"))
        result["swarm"] = swarm(model, nodes, batch, context, vocab, rounds, root)
        result["swarm"]["workdir"] = str(root)
    return result


def format_result(r: dict) -> str:
    o, ms = r["one_node"], r["one_node"]["ms"]
    mem = o["memory"]
    lines = [f"{o['model']} ({o['params']:,} params, vocab {o['vocab']}), batch {o['batch']} x {o['context']} "
             f"tokens, {o['device']}, {o['threads']} threads, medians of {o['iters']}",
             f"{'forward+backward':<28}{ms['forward_backward']:>10.1f} ms",
             f"{'DeMo step':<28}{ms['demo_step']:>10.1f} ms  ({100 * o['demo_step_over_forward_backward']:.1f}% of "
             "forward+backward)",
             f"{'AdamW step (fused)':<28}{ms['adamw_fused_step']:>10.1f} ms",
             f"{'tokens/s, one node alone':<28}{o['tokens_per_s_alone']:>10.0f}"]
    if "mfu_bf16" in o:
        mfu = "unknown peak" if o["mfu_bf16"] is None else f"{100 * o['mfu_bf16']:.1f}%"
        lines.append(f"{'model FLOPs utilisation':<28}{mfu:>10}  ({o['model_flops_per_s'] / 1e12:.1f} TFLOP/s)")
    lines.append(f"{'memory estimate / peak':<28}{mem['estimate_over_peak']:>10.3f}  ({mem['estimate'] / 2**20:.0f} "
                 f"vs {mem['measured_peak'] / 2**20:.0f} MiB)")
    if "swarm" in r:
        s = r["swarm"]
        lines += ["", f"{s['nodes']} nodes on this machine, {s['rounds']} rounds ({s['rounds_counted']} node-rounds "
                  "with every node contributing)",
                  f"{'tokens/s per node':<28}{s['tokens_per_s_per_node']:>10.0f}",
                  f"{'cycle per round':<28}{s['cycle_seconds']:>10.3f} s"]
        for part, share in s["share"].items():
            lines.append(f"  {part:<26}{100 * share:>9.1f}%")
    return "\n".join(lines)
