"""``demo-node bench optimizer``: step time and payload bytes of our DeMo beside the reference's, AdamW and fwd+bwd.

Every optimizer runs on its own copy of the same model with the same gradients (one real forward + backward on a
random batch), on the same device, in the same process, one after the other; the median of ``iters`` timed calls
after two warm-up calls is reported. The baseline "reference" is :mod:`demo_node.bench.reference_demo`, a plain
re-statement of the reference step (two inverse transforms, int64 indices, fp32 values).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch

from demo_node.bench.reference_demo import ReferenceDeMo
from demo_node.core.config import VALUE_MODES
from demo_node.core.optimizer import DeMo
from demo_node.models.gpt import PRESETS, build
from demo_node.wire.codec import decode, encode, encoded_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], iters: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def forward_backward_on_random_tokens(model: torch.nn.Module, vocab: int, batch: int, context: int,
                                      dev: torch.device) -> Callable[[], None]:
    """One forward + backward of ``model`` on a fixed random batch (bf16 autocast on CUDA, as a node runs), as a
    function to time; it leaves the gradients in the parameters."""
    tokens = torch.randint(0, vocab, (batch, context + 1), device=dev)
    x, y = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = model(x, y)
        loss.backward()

    return fwd_bwd


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
    result["ms"]["forward_backward"] = _median_ms(fwd_bwd, max(3, iters // 2), dev, warmup=1)
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
        result["ms"][f"{kind}_step"] = _median_ms(opt.step, iters, dev)
        if kind == "demo":
            contribution = opt.prepare()
            result["ms"]["demo_prepare"] = _median_ms(opt.prepare, iters, dev)
            result["ms"]["demo_apply"] = _median_ms(lambda: opt.apply([contribution]), iters, dev)
            layout = opt.layout
            payload = encode(contribution, layout, run_id="bench", round=1, sender=bytes(38))
            result["ms"]["encode"] = _median_ms(
                lambda: encode(contribution, layout, run_id="bench", round=1, sender=bytes(38)), iters, dev
            )
            result["ms"]["decode"] = _median_ms(lambda: decode(payload, layout), iters, dev)
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
