"""``demo-node bench convergence``: the tiny GPT trained the same way by several optimizers; held-out loss against
step and against cumulative bytes sent per node.

Every method starts from ``build("tiny", seed=seed)``, takes ``steps`` steps of ``global_batch`` sequences split
evenly over ``nodes`` workers, worker ``i`` drawing its batches from ``WindowStream(corpus, 64, global_batch/nodes,
seed * 1000 + i)`` (the same data in the same order for every method; a one-process method concatenates the
workers' batches), with the same lr schedule (linear warm-up over ``min(20, steps // 5)`` steps, then cosine to 10%
of the peak at the last step), and is evaluated on one fixed held-out set, ``held_out_windows(corpus, 64, windows)``,
every ``eval_every`` steps. Methods:

- ``adamw``: torch AdamW (torch defaults besides lr) in one process on the global batch. Sends nothing.
- ``adamw-dense``: AdamW with dense gradient averaging over N workers. SIMULATED: the mean of the N workers'
  gradients is the global batch's gradient, so its curve is ``adamw``'s (the same computation, not rerun); its bytes
  are COMPUTED for a ring all-reduce of the flat fp32 gradient, 2(N-1)/N x 4 x params per node and step.
- ``reference``: a plain re-statement of the reference DeMo (int64 indices, fp32 values, all-gather), N workers
  SIMULATED in one process: each its own momentum and batches, their (idx, val) concatenated as an all-gather would,
  ``scatter_reduce(mean)``, inverse DCT, sign step. Bytes per node and step: its own payload (the int64 and fp32
  tensors, ``nbytes``) sent to each of the N-1 others, (N-1) x payload.
- ``ours`` and ``ours-<variant>``: N real processes (``convergence_worker``, ``demo_node.SwarmOptimizer``) on
  127.0.0.1, started together (training begins at the first round with all N members). Bytes: each node's own
  accounting of what it wrote to its streams (``bytes_sent``) from that round on (so not the joiners' download of
  the parameters), mean over nodes; not counted at the wire (libp2p framing, encryption and the DHT are extra).
- ``hivemind`` and ``hivemind-8bit``: not run in this version (see ``NOT_RUN``).

Learning rates: each method tries every lr of its family (``adamw`` or ``demo``) on the first ``sweep_steps``
steps (with the full run's schedule cut short there: same warm-up, the cosine spanning ``sweep_steps``) and keeps the
one with the lowest held-out loss; the full run then uses it. ``adamw-dense`` shares ``adamw``'s sweep.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from demo_node.bench.reference_demo import ReferenceDeMo
from demo_node.bench.robust_bench import held_out
from demo_node.core.dct import chunk_size
from demo_node.core.layout import matrix_shape
from demo_node.data.stream import WindowStream, held_out_windows
from demo_node.data.tokenizer import byte_tokenizer
from demo_node.data.tokens import open_corpus
from demo_node.models.gpt import PRESETS, build

MODEL = "tiny"
OURS_VARIANTS = {"ours": {}, "ours-k8": {"topk": 8}, "ours-fp16": {"values": "fp16"}, "ours-sign": {"values": "sign"}}
"""Our swarm at the defaults (topk 32, int8 values) and at other top-k and value-precision settings."""
_HIVEMIND = ("not run: this first version has no hivemind.Optimizer worker yet (N processes, AdamW, "
             "target_batch_size = the global batch, bytes from the p2pd sockets' TCP counters); its 8-bit would be "
             "grad_compression=hivemind.Uniform8BitQuantization()")
NOT_RUN = {"hivemind": _HIVEMIND, "hivemind-8bit": _HIVEMIND}
METHODS = ("adamw", "adamw-dense", "reference", *OURS_VARIANTS, *NOT_RUN)
FAMILY = {"adamw": "adamw", "adamw-dense": "adamw", "reference": "demo", "hivemind": "adamw", "hivemind-8bit": "adamw",
          **{k: "demo" for k in OURS_VARIANTS}}
DEFAULT_LRS = {"adamw": [1e-3, 3e-3, 1e-2], "demo": [1e-3, 3e-3]}


def schedule_factor(step: int, steps: int, warmup: int) -> float:
    """The share of the peak lr at a step: linear warm-up, then cosine down to 10% at the last step."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - 1 - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_steps(steps: int) -> int:
    return min(20, steps // 5)


class _Setup:
    """What every method shares: the corpus, the held-out set, the workers' streams."""

    def __init__(self, nodes: int, global_batch: int, windows: int, seed: int):
        if global_batch % nodes:
            raise ValueError(f"--global-batch {global_batch} does not split evenly over {nodes} nodes")
        self.nodes, self.global_batch, self.seed = nodes, global_batch, seed
        self.per_node = global_batch // nodes
        self.context = PRESETS[MODEL].context
        self.corpus = open_corpus("stdlib", byte_tokenizer())
        self.hx, self.hy = held_out_windows(self.corpus, self.context, windows)

    def streams(self) -> list[WindowStream]:
        return [WindowStream(self.corpus, self.context, self.per_node, self.seed * 1000 + i) for i in range(self.nodes)]


def _train_adamw(s: _Setup, lr: float, steps: int, eval_every: int) -> dict:
    model = build(MODEL, seed=s.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    warm = warmup_steps(steps)
    streams, curve, began = s.streams(), [], time.monotonic()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * schedule_factor(step, steps, warm)
        opt.zero_grad(set_to_none=True)
        for st in streams:  # the mean of the workers' losses: the global batch's loss (equal micro-batches)
            x, y = st.next()
            (model(x, y) / s.nodes).backward()
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": held_out(model, s.hx, s.hy), "bytes_sent": 0})
    return {"curve": curve, "seconds": time.monotonic() - began}


class _ReferenceWorkers:
    """N reference-DeMo workers in one process: their own momenta, one all-gather of their (idx, val) per step."""

    def __init__(self, params: list[torch.Tensor], nodes: int, topk: int = 32, chunk: int = 64, beta: float = 0.999):
        self.params, self.nodes, self.topk, self.chunk, self.beta = params, nodes, topk, chunk, beta
        self.ref = ReferenceDeMo(params, topk=topk, chunk=chunk, beta=beta)  # its transforms, not its step
        self.deltas = [[torch.zeros_like(p) for p in params] for _ in range(nodes)]

    @torch.no_grad()
    def prepare(self, worker: int, lr: float) -> tuple[list, int]:
        """This worker's payload per parameter (idx int64, val fp32) from its gradients in ``p.grad``; its bytes."""
        out, nbytes = [], 0
        for p, delta in zip(self.params, self.deltas[worker]):
            delta.mul_(self.beta).add_(p.grad, alpha=lr)
            rows, cols = matrix_shape(p.shape)
            h, w = chunk_size(rows, self.chunk), chunk_size(cols, self.chunk)
            coeff = self.ref._encode(delta.view(rows, cols), h, w)
            flat = coeff.reshape(coeff.shape[0], coeff.shape[1], -1)
            k = max(1, min(self.topk, flat.shape[-1]))
            idx = torch.topk(flat.abs(), k, dim=-1, largest=True, sorted=False).indices
            val = torch.gather(flat, -1, idx)
            delta.sub_(self.ref._decode(self.ref._decompress(idx, val, coeff.shape)).view_as(delta))
            out.append((idx, val, coeff.shape))
            nbytes += idx.nbytes + val.nbytes
        return out, nbytes

    @torch.no_grad()
    def apply(self, payloads: list[list], lr: float) -> None:
        for j, p in enumerate(self.params):
            shape = payloads[0][j][2]
            idx = torch.cat([pl[j][0] for pl in payloads], -1)  # the all-gather
            val = torch.cat([pl[j][1] for pl in payloads], -1)
            new_grad = self.ref._decode(self.ref._decompress(idx, val, shape))
            p.add_(new_grad.view_as(p).sign(), alpha=-lr)


def _train_reference(s: _Setup, lr: float, steps: int, eval_every: int) -> dict:
    model = build(MODEL, seed=s.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    workers = _ReferenceWorkers(params, s.nodes)
    warm = warmup_steps(steps)
    streams, curve, sent, began = s.streams(), [], 0, time.monotonic()
    for step in range(steps):
        step_lr = lr * schedule_factor(step, steps, warm)
        payloads = []
        for i, st in enumerate(streams):
            x, y = st.next()
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            payload, nbytes = workers.prepare(i, step_lr)
            payloads.append(payload)
            sent += (s.nodes - 1) * nbytes / s.nodes  # each worker sends its payload to the N-1 others; mean
        workers.apply(payloads, step_lr)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": held_out(model, s.hx, s.hy), "bytes_sent": sent})
    return {"curve": curve, "seconds": time.monotonic() - began}


def _train_ours(s: _Setup, lr: float, steps: int, eval_every: int, options: dict, workdir: Path, threads: int,
                deadline: float, timeout: float) -> dict:
    from demo_node.bench.swarm_bench import _wait
    from demo_node.daemon.children import NodeProcess, stop_all

    base = [sys.executable, "-m", "demo_node.bench.convergence_worker", "--nodes", str(s.nodes), "--batch",
            str(s.per_node), "--steps", str(steps), "--lr", repr(lr), "--seed", str(s.seed), "--windows",
            str(s.hx.shape[0]), "--eval-every", str(eval_every), "--warmup", str(warmup_steps(steps)), "--threads",
            str(threads), "--deadline", str(deadline), "--run-name", f"bench-convergence-{os.getpid()}-{workdir.name}",
            *[a for k, v in options.items() for a in (f"--{k}", str(v))]]
    workers: list[NodeProcess] = []
    began = time.monotonic()
    try:
        workers.append(NodeProcess(base + ["--index", "0"], workdir / "node-0", name="node 0"))
        _wait(lambda: bool(workers[0].of("started")) or workers[0].proc.poll() is not None, 120, "the first node")
        if not workers[0].of("started"):
            raise RuntimeError(f"the first node exited: see {workdir / 'node-0' / 'stderr.log'}")
        peers = workers[0].of("started")[0]["maddrs"]
        for i in range(1, s.nodes):
            workers.append(NodeProcess(base + ["--index", str(i), "--peers", *peers], workdir / f"node-{i}",
                                       name=f"node {i}"))

        def done() -> bool:
            for w in workers:
                if w.proc.poll() is not None and not w.of("finished"):
                    raise RuntimeError(f"{w.name} exited early: see {w.folder / 'stderr.log'}")
            return all(w.of("finished") for w in workers)

        _wait(done, timeout, f"{s.nodes} nodes to take {steps} steps")
        seconds = time.monotonic() - began
        by_step = {}
        for w in workers:
            for e in w.of("curve"):
                by_step.setdefault(e["step"], []).append(e)
        curve = []
        for step in sorted(by_step):
            lines = by_step[step]
            loss = next((e["loss"] for e in lines if "loss" in e), None)
            if loss is not None:
                curve.append({"step": step, "loss": loss,
                              "bytes_sent": statistics.mean(e["bytes_sent"] for e in lines)})
        finished = [w.of("finished")[0] for w in workers]
        rounds = [e for w, f in zip(workers, finished) for e in w.of("round")
                  if e.get("member") and f["first_round"] <= e["round"] < f["first_round"] + f["steps"]]
        diverged = sum(len(w.of("diverged")) for w in workers)
        return {"curve": curve, "seconds": seconds,
                "first_rounds": [f["first_round"] for f in finished], "diverged_events": diverged,
                "rounds_applied": [f["rounds_applied"] for f in finished],
                "contributed_fraction": sum(bool(e.get("contributed")) for e in rounds) / max(1, len(rounds)),
                "members_last": [f["members"] for f in finished]}
    finally:
        stop_all(workers, grace=20)
        for w in workers:
            w.close()


def run(nodes: int = 2, steps: int = 145, global_batch: int = 24, windows: int = 256, eval_every: int = 10,
        seed: int = 0, lrs: dict[str, list[float]] | None = None, runs: list[str] | None = None,
        sweep_steps: int | None = None, threads: int = 1, workdir: str | None = None, deadline: float = 10.0,
        log=None) -> dict:
    lrs = {**DEFAULT_LRS, **(lrs or {})}
    runs = list(runs or METHODS)
    unknown = [m for m in runs if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}: choose from {', '.join(METHODS)}")
    if "adamw-dense" in runs and "adamw" not in runs:
        runs.insert(0, "adamw")  # adamw-dense is adamw's run with computed bytes
    sweep_steps = sweep_steps if sweep_steps is not None else max(1, steps // 3)
    root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-convergence-"))
    s = _Setup(nodes, global_batch, windows, seed)
    model = build(MODEL, seed=seed)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    timeout = 180 + 4.0 * steps  # a healthy round of the tiny model takes well under a second here

    def train(method: str, lr: float, n_steps: int, tag: str) -> dict:
        log(f"[convergence] {method} lr {lr:g}, {n_steps} steps ({tag})")
        if method == "adamw":
            return _train_adamw(s, lr, n_steps, eval_every)
        if method == "reference":
            return _train_reference(s, lr, n_steps, eval_every)
        folder = root / f"{method}-{tag}-lr{lr:g}"
        return _train_ours(s, lr, n_steps, eval_every, OURS_VARIANTS[method], folder, threads, deadline, timeout)

    result: dict = {"model": MODEL, "params": params, "nodes": nodes, "steps": steps, "global_batch": global_batch,
                    "per_node_batch": s.per_node, "windows": windows, "eval_every": eval_every, "seed": seed,
                    "data_seeds": [seed * 1000 + i for i in range(nodes)], "warmup": warmup_steps(steps),
                    "sweep_steps": sweep_steps, "lrs": lrs, "workdir": str(root),
                    "dense_fp32_bytes_per_node_step": 2 * (nodes - 1) / nodes * 4 * params, "methods": {}}
    for method in runs:
        if method in NOT_RUN:
            result["methods"][method] = {"not_run": NOT_RUN[method]}
            continue
        if method == "adamw-dense":
            continue  # filled from adamw's run below
        candidates = lrs[FAMILY[method]]
        sweep = []
        if len(candidates) > 1:
            for lr in candidates:
                try:
                    r = train(method, lr, sweep_steps, "sweep")
                    sweep.append({"lr": lr, "loss": r["curve"][-1]["loss"]})
                except Exception as exc:  # noqa: BLE001 - a failing lr is recorded, not fatal
                    sweep.append({"lr": lr, "loss": None, "error": repr(exc)})
            finite = [x for x in sweep if x["loss"] is not None and math.isfinite(x["loss"])]
            best = min(finite, key=lambda x: x["loss"])["lr"] if finite else candidates[0]
        else:
            best = candidates[0]
        try:
            r = train(method, best, steps, "full")
        except Exception as exc:  # noqa: BLE001 - a failed method is reported, the others still run
            result["methods"][method] = {"not_run": f"failed: {exc!r}", "lr": best, "sweep": sweep}
            continue
        result["methods"][method] = {"lr": best, "sweep": sweep, **r}
    if "adamw-dense" in runs and "curve" in result["methods"].get("adamw", {}):
        a = result["methods"]["adamw"]
        per_step = result["dense_fp32_bytes_per_node_step"]
        result["methods"]["adamw-dense"] = {
            "lr": a["lr"], "sweep": a["sweep"], "seconds": a["seconds"], "simulated": True,
            "note": "the curve of adamw (the mean of N workers' gradients is the global batch's gradient); bytes "
                    "computed for a ring all-reduce of the flat fp32 gradient, 2(N-1)/N x 4 x params per step",
            "curve": [{**c, "bytes_sent": per_step * c["step"]} for c in a["curve"]]}
    for name, m in result["methods"].items():
        if "curve" in m:
            last = m["curve"][-1]
            m["final_loss"] = last["loss"]
            m["bytes_per_node_step"] = last["bytes_sent"] / max(1, last["step"])
    base = result["methods"].get("adamw", {}).get("final_loss")
    dense = result["dense_fp32_bytes_per_node_step"]
    for name, m in result["methods"].items():
        if "final_loss" in m:
            m["loss_over_adamw"] = m["final_loss"] / base if base else None
            m["dense_over_bytes"] = dense / m["bytes_per_node_step"] if m["bytes_per_node_step"] else None
    for name in ("reference", *OURS_VARIANTS):
        if name in result["methods"]:
            result["methods"][name]["simulated"] = name == "reference"
    result["methods"] = {k: result["methods"][k] for k in METHODS if k in result["methods"]}
    return result


def format_result(r: dict) -> str:
    lines = [(f"{r['model']} GPT ({r['params']:,} params), {r['steps']} steps of a global batch of {r['global_batch']} "
             f"({r['nodes']} x {r['per_node_batch']}), held-out loss on {r['windows']} windows every "
             f"{r['eval_every']} steps; model seed {r['seed']}, data seeds {r['data_seeds']}; warm-up {r['warmup']}, "
             f"cosine to 10%; lr: best held-out loss after {r['sweep_steps']} steps of {r['lrs']}"),
             f"dense fp32 ring all-reduce: {r['dense_fp32_bytes_per_node_step']:,.0f} bytes per node and step",
             "",
             (f"{'method':<15}{'lr':>8}{'final loss':>12}{'/ adamw':>9}{'bytes/node/step':>17}{'dense / this':>14}"
              f"{'wall s':>9}  how")]
    for name, m in r["methods"].items():
        if "final_loss" not in m:
            lines.append(f"{name:<15}  {m['not_run']}")
            continue
        how = "one process" if name == "adamw" else ("simulated, bytes computed" if name == "adamw-dense" else
                                                     "simulated in one process" if name == "reference" else
                                                     f"{r['nodes']} processes, bytes accounted")
        ratio = f"{m['loss_over_adamw']:.4f}" if m.get("loss_over_adamw") else ""
        dense = f"{m['dense_over_bytes']:.1f}" if m.get("dense_over_bytes") else ""
        lines.append(f"{name:<15}{m['lr']:>8g}{m['final_loss']:>12.4f}{ratio:>9}{m['bytes_per_node_step']:>17,.0f}"
                     f"{dense:>14}{m['seconds']:>9.1f}  {how}")
    sweeps = [(n, m["sweep"]) for n, m in r["methods"].items() if m.get("sweep")]
    if sweeps:
        lines += ["", "lr sweep (held-out loss after the sweep's steps):"]
        for name, sweep in sweeps:
            lines.append(f"  {name:<13}" + "   ".join(
                f"{x['lr']:g}: {x['loss']:.4f}" if x["loss"] is not None else f"{x['lr']:g}: failed" for x in sweep))
    return "\n".join(lines)


def plot(result: dict, path_prefix: str) -> list[str]:
    """Two PNGs: held-out loss against step, and against cumulative bytes sent per node (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = (f"{result['model']} GPT, {result['nodes']} nodes, global batch {result['global_batch']}, "
             f"{result['windows']} held-out windows")
    paths = []
    for kind in ("step", "bytes"):
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, m in result["methods"].items():
            if "curve" not in m:
                continue
            ys = [c["loss"] for c in m["curve"]]
            if kind == "step":
                ax.plot([c["step"] for c in m["curve"]], ys, marker=".", label=f"{name} (lr {m['lr']:g})")
            elif m["bytes_per_node_step"] > 0:
                ax.plot([c["bytes_sent"] for c in m["curve"]], ys, marker=".", label=f"{name} (lr {m['lr']:g})")
            else:
                ax.axhline(m["final_loss"], linestyle="--", color="gray", label=f"{name}: final, sends nothing")
        if kind == "bytes":
            ax.set_xscale("log")
        ax.set_xlabel("step" if kind == "step" else "cumulative bytes sent per node")
        ax.set_ylabel("held-out loss")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = f"{path_prefix}_loss_vs_{kind}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
