"""The measured peak memory of training steps (forward, backward, DeMo step) in a fresh process, to check the
estimate of :mod:`demo_node.models.memory` against.

On CUDA the peak is ``torch.cuda.max_memory_allocated``. On the CPU (``method="profiler"``) it is the peak of live
tensor bytes, replayed from the allocation and free events that torch's profiler records for every CPU tensor
storage (the allocator calls that CUDA's counter sees): exact for tensors, blind to the allocator's own overhead
and to what libraries allocate outside torch. ``method="rss"`` is the cross-check that sees everything: the rise
of the process's peak resident size over its size before the model was built (after one step of a tiny model, so
that lazy imports and kernel set-up are not counted), run without the profiler and with glibc's mmap threshold
fixed at 64 KiB, so that a freed buffer goes back to the system rather than staying in the heap; with glibc's
default, freed heap memory is kept and the peak RSS rises about 20% above the live bytes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import torch


def measure(spec: dict[str, Any], batch: int, context: int, *, param_dtype: str = "fp32",
            autocast_bf16: bool = False, grad_checkpointing: bool = False, micro_batches: int = 2, steps: int = 2,
            device: str = "cpu", threads: int = 1, method: str = "profiler", timeout: float = 600) -> dict[str, Any]:
    """Run ``steps`` training steps of ``micro_batches`` forward+backward passes each and a DeMo step, in a fresh
    process: its peak bytes ("peak") and the seconds per forward+backward ("fwd_bwd_seconds")."""
    if method not in ("profiler", "rss"):
        raise ValueError(f"method {method!r}: choose profiler or rss")
    job = {"spec": spec, "batch": batch, "context": context, "param_dtype": param_dtype,
           "autocast_bf16": autocast_bf16, "grad_checkpointing": grad_checkpointing, "method": method,
           "micro_batches": micro_batches, "steps": steps, "device": device, "threads": threads}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536") if method == "rss" else None
    done = subprocess.run([sys.executable, "-m", "demo_node.models.peak"], input=json.dumps(job), text=True,
                          capture_output=True, timeout=timeout, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peak measurement failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _train(job: dict[str, Any], device: torch.device) -> float:
    from demo_node.core.optimizer import DeMo
    from demo_node.models.spec import build_model, enable_grad_checkpointing

    dtype = torch.bfloat16 if job["param_dtype"] == "bf16" else None
    model = build_model(job["spec"], device, seed=0, dtype=dtype)
    if job["grad_checkpointing"]:
        enable_grad_checkpointing(model)
    opt = DeMo(model.parameters())
    vocab = _vocab(job["spec"])
    gen = torch.Generator().manual_seed(0)
    spent, passes = 0.0, 0
    for _ in range(job["steps"]):
        for _ in range(job["micro_batches"]):
            window = torch.randint(0, vocab, (job["batch"], job["context"] + 1), generator=gen).to(device)
            begun = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=job["autocast_bf16"]):
                loss = model(window[:, :-1], window[:, 1:])
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            spent, passes = spent + time.perf_counter() - begun, passes + 1
        opt.step()
        opt.zero_grad(set_to_none=True)
    return spent / passes


def _vocab(spec: dict[str, Any]) -> int:
    config = spec["config"]
    return config["vocab"] if spec["kind"] == "gpt" else config.get("text_config", config)["vocab_size"]


def _warm_up(job: dict[str, Any]) -> None:
    """One step of a tiny model first: lazy imports and the kernels' first-use set-up allocate tens of MB that
    the model's own peak must not be charged with."""
    from demo_node.models.spec import hf_class, model_spec

    tiny = {**job, "spec": model_spec("tiny", None, 256, 0), "batch": 1, "context": 8, "micro_batches": 1,
            "steps": 1}
    _train(tiny, torch.device("cpu"))
    if job["spec"]["kind"] == "hf":
        hf_class(job["spec"]["architecture"])
        hf = model_spec("llama-20m", None, 256, 8)
        hf["config"] = {**hf["config"], "num_hidden_layers": 1}
        _train({**tiny, "spec": hf}, torch.device("cpu"))


def _main() -> None:
    job = json.loads(sys.stdin.read())
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    result: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result["fwd_bwd_seconds"] = _train(job, device)
        result["peak"] = torch.cuda.max_memory_allocated(device) - base
        print(json.dumps(result))
        return
    if job["method"] == "rss":
        _warm_up(job)
        before = _rss()
        result["fwd_bwd_seconds"] = _train(job, device)
        result["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result["fwd_bwd_seconds"] = _train(job, device)
        events = [e for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
        live = peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()  # negative for a free
            peak = max(peak, live)
        result["peak"] = peak
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
