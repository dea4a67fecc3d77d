"""``python -m benchmarks optimizer``: step time and payload bytes of our DeMo beside the reference's, AdamW and
forward+backward.

Every optimizer runs on its own copy of the same model with the same gradients (one real forward + backward on a
random batch), on the same device, in the same process, one after the other; the median of ``iters`` timed calls
after two warm-up calls is reported. The baseline "reference" is :mod:`benchmarks.reference_demo`, a plain
re-statement of the reference step (two inverse transforms, int64 indices, fp32 values).
"""

from __future__ import annotations

import argparse
import copy
from typing import Callable

import torch

from benchmarks.reference_demo import ReferenceDeMo
from demo_node.bench.timing import forward_backward_on_random_tokens, median_ms
from demo_node.commands.common import emit
from demo_node.core.config import VALUE_MODES
from demo_node.core.optimizer import DeMo
from demo_node.models.gpt import PRESETS, build
from demo_node.wire.codec import decode, encode, encoded_size


def run(
    model: str = "bench",
    device: str = "cpu",
    iters: int = 10,
    batch: int = 8,
    values: str = "int8",
    skip_reference: bool = False,
) -> dict:
    dev = torch.device(device)
    cfg = PRESETS[model]
    name, model = model, build(model, dev)
    numel = sum(p.numel() for p in model.parameters())
    fwd_bwd = forward_backward_on_random_tokens(model, cfg.vocab, batch, cfg.context, dev)

    result: dict = {
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": {"name": name, **cfg.as_dict(), "params": numel, "batch": batch},
        "iters": iters,
        "ms": {},
    }
    result["ms"]["forward_backward"] = median_ms(fwd_bwd, max(3, iters // 2), dev, warmup=1)
    fwd_bwd()
    grads = [p.grad.detach().clone() for p in model.parameters()]

    def with_grads(make: Callable[[list], torch.optim.Optimizer]):
        m = copy.deepcopy(model)
        for p, g in zip(m.parameters(), grads):
            p.grad = g.clone()
        return m, make(list(m.parameters()))

    makers: dict[str, Callable[[list], torch.optim.Optimizer]] = {
        "demo": lambda ps: DeMo(ps, lr=1e-3, values=values),
        "adamw_foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "adamw_fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
    }
    if not skip_reference:
        makers["reference_demo"] = lambda ps: ReferenceDeMo(ps, lr=1e-3)
    for kind, make in makers.items():
        m, opt = with_grads(make)
        result["ms"][f"{kind}_step"] = median_ms(opt.step, iters, dev)
        if kind == "demo":
            contribution = opt.prepare()
            result["ms"]["demo_prepare"] = median_ms(opt.prepare, iters, dev)
            result["ms"]["demo_apply"] = median_ms(lambda: opt.apply([contribution]), iters, dev)
            layout = opt.layout
            payload = encode(contribution, layout, run_id="bench", round=1, sender=bytes(38))
            result["ms"]["encode"] = median_ms(
                lambda: encode(contribution, layout, run_id="bench", round=1, sender=bytes(38)), iters, dev
            )
            result["ms"]["decode"] = median_ms(lambda: decode(payload, layout), iters, dev)
        if kind == "reference_demo":
            result["reference_payload_bytes"] = opt.bytes_sent
        del m, opt
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    ref_bytes = sum(spec.num_blocks * spec.k * 12 for spec in layout.buckets)
    result["bytes"] = {
        "ours": len(payload),
        "ours_value_mode": values,
        "ours_by_value_mode": {mode: encoded_size(layout, mode, run_id="bench") for mode in VALUE_MODES},
        "reference_format": result.get("reference_payload_bytes", ref_bytes),
        "dense_fp32": 4 * numel,
    }
    ms, b = result["ms"], result["bytes"]
    result["ratios"] = {
        "payload_ours_over_reference": b["ours"] / b["reference_format"],
        "dense_fp32_over_ours": b["dense_fp32"] / b["ours"],
        "demo_step_over_adamw_fused": ms["demo_step"] / ms["adamw_fused_step"],
    }
    if "reference_demo_step" in ms:
        result["ratios"]["demo_step_over_reference_step"] = ms["demo_step"] / ms["reference_demo_step"]
    return result


def format_result(r: dict) -> str:
    m, ms, b, q = r["model"], r["ms"], r["bytes"], r["ratios"]
    lines = [
        f"device {r['device']}, {r['threads']} threads, torch {r['torch']}",
        f"model GPT {m['n_layer']}L d{m['d_model']} h{m['n_head']} vocab {m['vocab']} ctx {m['context']}: "
        f"{m['params']:,} params, batch {m['batch']}; medians of {r['iters']} calls",
        "",
        f"{'what':<34}{'ms':>10}",
    ]
    for name, value in ms.items():
        lines.append(f"{name:<34}{value:>10.1f}")
    lines += ["", f"{'payload per step':<34}{'bytes':>12}"]
    lines.append(f"{'ours (' + b['ours_value_mode'] + ' values)':<34}{b['ours']:>12,}")
    for mode, size in b["ours_by_value_mode"].items():
        lines.append(f"{'  ours with ' + mode + ' values':<34}{size:>12,}")
    lines.append(f"{'reference format (int64 + fp32)':<34}{b['reference_format']:>12,}")
    lines.append(f"{'dense fp32':<34}{b['dense_fp32']:>12,}")
    lines += ["", "ratios"]
    for name, value in q.items():
        lines.append(f"  {name:<40}{value:>8.3f}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    opt = sub.add_parser("optimizer", help="step time and payload bytes: our DeMo, the reference, AdamW")
    opt.add_argument("--model", default="bench", choices=list(PRESETS), help="GPT preset (default: bench, 10.9M)")
    opt.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    opt.add_argument("--iters", type=int, default=10, help="timed calls per figure (median reported)")
    opt.add_argument("--batch", type=int, default=8, help="sequences per forward/backward")
    opt.add_argument("--values", default="int8", choices=VALUE_MODES, help="value precision of our payload")
    opt.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    opt.add_argument("--skip-reference", action="store_true", help="do not time the reference re-statement")
    opt.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    opt.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(
        model=args.model,
        device=args.device,
        iters=args.iters,
        batch=args.batch,
        values=args.values,
        skip_reference=args.skip_reference,
    )
    emit(result, format_result(result), args.json)
    return 0
