"""``python -m benchmarks convergence``: a GPT or Llama preset (the tiny GPT unless ``--model``) trained the same way by
several optimizers; held-out loss against step and against cumulative bytes sent per node.

Every method starts from ``convergence_model.make(model, seed, device)`` (the same parameters in every process; the
data and held-out windows are drawn on the CPU and moved to ``device``), takes ``steps`` steps of ``global_batch``
sequences split evenly over ``nodes`` workers, worker ``i`` drawing its batches from ``WindowStream(corpus, context,
global_batch/nodes, seed * 1000 + i)`` (the same data in the same order for every method; a one-process method
concatenates the workers' batches), with the same lr schedule (linear warm-up over ``warmup`` steps, by default
``min(20, steps // 5)``, then cosine to 10% of the peak at the last step), and is evaluated on one fixed held-out set,
``held_out_windows(corpus, context, windows)``, every ``eval_every`` steps. Methods:

- ``adamw``: torch AdamW (torch defaults besides lr) in one process on the global batch. Sends nothing.
- ``adamw-dense``: AdamW with dense gradient averaging over N processes (``convergence_gloo``: torch.distributed,
  gloo on 127.0.0.1, an all_reduce of the flat fp32 gradient per step, divided by N), so its curve is ``adamw``'s up
  to float rounding (the result gives the largest difference). Bytes MEASURED at the wire (``ss``: the TCP bytes of
  each rank's sockets, read while all ranks are connected); the ring all-reduce figure, 2(N-1)/N x 4 x params per
  node and step, is COMPUTED beside it.
- ``reference``: a plain re-statement of the reference DeMo (int64 indices, fp32 values, all-gather) over N
  processes (``convergence_gloo --method reference``: torch.distributed, gloo on 127.0.0.1, two all_gathers per
  step), bytes MEASURED at the wire (``ss``).
- ``reference-sim``: the same computation with the N workers SIMULATED in one process (quick; bytes computed):
  each its own momentum and batches, their (idx, val) concatenated as an all-gather would, ``scatter_reduce(mean)``,
  inverse DCT, sign step. Bytes per node and step: its own payload (the int64 and fp32 tensors, ``nbytes``) sent to
  each of the N-1 others, (N-1) x payload.
- ``ours`` and ``ours-<variant>``: N real processes (``convergence_worker``, ``demo_node.SwarmOptimizer``) on
  127.0.0.1, started together (training begins a few rounds after all N are members, at a round the bench writes
  to every node). Bytes MEASURED at the wire (the TCP bytes of each node's p2pd, ``ss``, read while all are
  connected) from that round on (so not the joiners' download of the parameters), mean over nodes; each node's own
  accounting of what it wrote to its streams is kept beside it (``bytes_accounted``: no libp2p framing or
  encryption).
- ``hivemind`` and ``hivemind-8bit``: ``hivemind.Optimizer`` over N peers (``convergence_hivemind``), inner optimizer
  torch AdamW, ``target_batch_size`` = the global batch (one epoch = one step, one batch per peer), synchronous
  (no local updates, no delays), gradients averaged in groups of exactly N, no state averaging within the run;
  ``hivemind`` with its default compression (none: fp32), ``hivemind-8bit`` with ``Uniform8BitQuantization``.
  Bytes MEASURED at the wire: the TCP bytes of each peer's p2pd (gradient all-reduce, matchmaking and the DHT's
  progress reports), mean over peers.

Learning rates (``sweep``): ``full`` (the default) runs every lr of a method's family (``adamw`` or ``demo``) for the
full ``steps`` on the first seed (``sweep_seeds="all"``: on every seed) and keeps the one with the lowest (mean)
final held-out loss (those runs are the result: the lr is chosen at the horizon that is reported); ``short`` runs
each for ``sweep_steps`` (default a third, with the schedule cut short there: same warm-up, the cosine spanning
``sweep_steps``), then the best for the full ``steps`` (cheaper, but a short horizon favours larger lrs).
``adamw-dense``, ``hivemind`` and ``hivemind-8bit`` run at ``adamw``'s choice (see ``SHARED_LR``). With several
``seeds`` every method runs once per seed at its chosen lr (reusing the sweep's runs); the table gives the mean and sd
of the final held-out loss.
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

from benchmarks import convergence_procs
from benchmarks.reference_demo import ReferenceDeMo
from benchmarks.robust_bench import held_out
from demo_node.core.dct import chunk_size
from demo_node.core.layout import matrix_shape
from demo_node.data.stream import WindowStream, held_out_windows
from demo_node.data.tokenizer import byte_tokenizer
from demo_node.data.tokens import open_corpus
from benchmarks.convergence_model import MODELS, check_device, context_of, make, on, parameter_count

MODEL = "tiny"
"""The default GPT preset (``--model``)."""
OURS_VARIANTS = {"ours": {}, "ours-k8": {"topk": 8}, "ours-fp16": {"values": "fp16"}, "ours-sign": {"values": "sign"}}
"""Our swarm at the defaults (topk 32, int8 values) and at other top-k and value-precision settings (``--variants``
adds more: any SwarmOptimizer options)."""
HIVEMIND_VARIANTS = {"hivemind": "none", "hivemind-8bit": "8bit"}
"""hivemind.Optimizer with its default compression (none: fp32) and with Uniform8BitQuantization."""
METHODS = ("adamw", "adamw-dense", "reference", "reference-sim", *OURS_VARIANTS, *HIVEMIND_VARIANTS)
FAMILY = {"adamw": "adamw", "reference": "demo", "reference-sim": "demo", **{k: "demo" for k in OURS_VARIANTS}}
SHARED_LR = {"adamw-dense": "adamw", "hivemind": "adamw", "hivemind-8bit": "adamw"}
"""Methods that run at adamw's chosen lr rather than a sweep of their own: each is AdamW on the global batch's
(averaged) gradient, so AdamW's sweep is theirs (hivemind-8bit's up to its quantisation noise); a sweep of their own
would only repeat it at several times the cost (N processes each)."""
DEFAULT_LRS = {"adamw": [1e-3, 3e-3, 1e-2], "demo": [1e-3, 3e-3]}
SWEEPS = ("full", "short")
SWEEP_SEEDS = ("first", "all")
"""The seeds an lr is chosen on: the first (the default), or every seed (the lr with the lowest mean final loss;
with a full sweep each of those runs is also its seed's result, so it costs no more than running the candidates on
every seed)."""


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

    def __init__(self, nodes: int, global_batch: int, windows: int, seed: int, model: str = MODEL,
                 device: str = "cpu", warmup: int | None = None):
        self.warmup = warmup  # steps of linear warm-up; None: warmup_steps(steps)
        if global_batch % nodes:
            raise ValueError(f"--global-batch {global_batch} does not split evenly over {nodes} nodes")
        self.nodes, self.global_batch, self.seed, self.model, self.device = nodes, global_batch, seed, model, device
        self.per_node = global_batch // nodes
        self.context = context_of(model)
        self.corpus = open_corpus("stdlib", byte_tokenizer())
        self.hx, self.hy = on(device, *held_out_windows(self.corpus, self.context, windows))

    def warm(self, steps: int) -> int:
        """The warm-up steps of a run of ``steps``: the same for every method."""
        return warmup_steps(steps) if self.warmup is None else min(self.warmup, steps)

    def streams(self) -> list[WindowStream]:
        return [WindowStream(self.corpus, self.context, self.per_node, self.seed * 1000 + i) for i in range(self.nodes)]


def _train_adamw(s: _Setup, lr: float, steps: int, eval_every: int) -> dict:
    model = make(s.model, s.seed, s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    warm = s.warm(steps)
    streams, curve, began = s.streams(), [], time.monotonic()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * schedule_factor(step, steps, warm)
        opt.zero_grad(set_to_none=True)
        for st in streams:  # the mean of the workers' losses: the global batch's loss (equal micro-batches)
            x, y = on(s.device, *st.next())
            (model(x, y) / s.nodes).backward()
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": held_out(model, s.hx, s.hy), "bytes_sent": 0})
    return {"curve": curve, "seconds": time.monotonic() - began}


class ReferenceWorkers:
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
    model = make(s.model, s.seed, s.device)
    params = [p for p in model.parameters() if p.requires_grad]
    workers = ReferenceWorkers(params, s.nodes)
    warm = s.warm(steps)
    streams, curve, sent, began = s.streams(), [], 0, time.monotonic()
    for step in range(steps):
        step_lr = lr * schedule_factor(step, steps, warm)
        payloads = []
        for i, st in enumerate(streams):
            x, y = on(s.device, *st.next())
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            payload, nbytes = workers.prepare(i, step_lr)
            payloads.append(payload)
            sent += (s.nodes - 1) * nbytes / s.nodes  # each worker sends its payload to the N-1 others; mean
        workers.apply(payloads, step_lr)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": held_out(model, s.hx, s.hy), "bytes_sent": sent})
    return {"curve": curve, "seconds": time.monotonic() - began}


START_MARGIN = 4
"""Rounds between the round in which the bench saw every node a member of an N-member round and the round training
starts at: time for every node to read the start round. Rounds in which every node waits (wait_round) last only
``idle_round`` (0.5 s), and a worker reads the file every 0.2 s: two rounds of margin let a node that read it a
moment late find the start round gone by (CI: first rounds 18 and 17 for a start at 17)."""


def announce_start(workers: list, nodes: int, path: Path, timeout: float) -> int:
    """Wait until every node has applied a round with all ``nodes`` members, then write the round training starts at
    to ``path`` (atomically) and return it. Every node reads the same number there: a start each node picked from
    the rounds it had seen differed by a round between nodes on a loaded machine, and their digests parted; a start
    fixed in advance (4N + 10 rounds) cost idle rounds of 5 s each, 90 s at N = 2 and 210 s at N = 8."""
    from benchmarks.swarm_bench import _wait

    def complete() -> bool:
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"{w.name} exited before training: see {w.folder / 'stderr.log'}")
        return all(any(e.get("member") and e.get("members") == nodes for e in w.of("round")) for w in workers)

    _wait(complete, timeout, f"all {nodes} nodes to be members")
    start = max(w.of("round")[-1]["round"] for w in workers) + START_MARGIN
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(start))
    tmp.replace(path)
    return start


def _train_ours(s: _Setup, lr: float, steps: int, eval_every: int, options: dict, workdir: Path, threads: int,
                deadline: float, timeout: float) -> dict:
    from benchmarks.convergence_procs import common_args, start_joined, wait_finished
    from demo_node.daemon.children import stop_all

    base = [sys.executable, "-m", "benchmarks.convergence_worker",
            *common_args(s, lr, steps, eval_every, threads, s.warm(steps)), "--deadline", str(deadline),
            "--run-name", f"bench-convergence-{os.getpid()}-{workdir.name}",
            "--stop-file", str(workdir / "stop"), "--start-file", str(workdir / "start"),
            *[a for k, v in options.items() for a in ("--option", f"{k}={v}")]]
    workers: list = []
    began = time.monotonic()
    try:
        start_joined(workers, base, workdir, s.nodes, "node")
        start = announce_start(workers, s.nodes, workdir / "start", timeout)
        wait_finished(workers, timeout, f"{s.nodes} nodes to take {steps} steps")
        seconds = time.monotonic() - began
        (workdir / "stop").touch()  # every node has read its wire bytes: they may leave
        by_step = {}
        for w in workers:
            for e in w.of("curve"):
                by_step.setdefault(e["step"], []).append(e)
        curve = []
        for step in sorted(by_step):  # bytes_sent: at the wire (p2pd's TCP bytes); bytes_accounted: our accounting
            lines = by_step[step]
            loss = next((e["loss"] for e in lines if "loss" in e), None)
            if loss is not None:
                curve.append({"step": step, "loss": loss, "bytes_sent": statistics.mean(e["wire_sent"] for e in lines),
                              "bytes_accounted": statistics.mean(e["bytes_sent"] for e in lines)})
        finished = [w.of("finished")[0] for w in workers]
        if curve:  # the end figure: read by each node after its last step, all still connected
            curve[-1]["bytes_sent"] = statistics.mean(f["wire_sent"] for f in finished)
            curve[-1]["bytes_accounted"] = statistics.mean(f["bytes_sent"] for f in finished)
        rounds = [e for w, f in zip(workers, finished) for e in w.of("round")
                  if e.get("member") and f["first_round"] <= e["round"] < f["first_round"] + f["steps"]]
        diverged = sum(len(w.of("diverged")) for w in workers)
        # what `python -m benchmarks model --check` needs to set its prediction against this run: the exchange the
        # rounds used and a training round's length (what a node's DHT traffic follows)
        exchange = statistics.mode(e["mode"] for e in rounds) if rounds else None
        round_seconds = statistics.mean(f["seconds"] / max(1, f["steps"]) for f in finished)
        return {"curve": curve, "seconds": seconds, "start_round": start, "exchange": exchange,
                "round_seconds": round_seconds,
                "first_rounds": [f["first_round"] for f in finished], "diverged_events": diverged,
                "rounds_applied": [f["rounds_applied"] for f in finished],
                "contributed_fraction": sum(bool(e.get("contributed")) for e in rounds) / max(1, len(rounds)),
                "members_last": [f["members"] for f in finished]}
    finally:
        (workdir / "stop").touch()
        stop_all(workers, grace=20)
        for w in workers:
            w.close()


def run(nodes: int = 2, steps: int = 145, global_batch: int = 24, windows: int = 256, eval_every: int = 10,
        seed: int = 0, lrs: dict[str, list[float]] | None = None, runs: list[str] | None = None,
        sweep_steps: int | None = None, threads: int = 1, workdir: str | None = None, deadline: float = 10.0,
        log=None, seeds: list[int] | None = None, sweep: str = "full", hivemind_matchmaking: float = 2.0,
        model: str = MODEL, variants: dict[str, dict] | None = None, device: str = "cpu",
        sweep_seeds: str = "first", warmup: int | None = None) -> dict:
    """``variants``: more runs of our swarm, name -> SwarmOptimizer options (run as ``ours-<name>``)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: choose from {', '.join(MODELS)}")
    check_device(device)
    ours_variants = {**OURS_VARIANTS, **{f"ours-{k}": dict(v) for k, v in (variants or {}).items()}}
    methods = (*METHODS, *(m for m in ours_variants if m not in METHODS))
    family = {**FAMILY, **{k: "demo" for k in ours_variants}}
    lrs = {**DEFAULT_LRS, **(lrs or {})}
    runs = list(runs or METHODS) + [m for m in methods if m not in METHODS and m not in (runs or ())]
    seeds = list(seeds) if seeds else [seed]
    unknown = [m for m in runs if m not in methods]
    if unknown:
        raise ValueError(f"unknown methods {unknown}: choose from {', '.join(methods)}")
    if sweep not in SWEEPS:
        raise ValueError(f"sweep must be one of {SWEEPS}, not {sweep!r}")
    if any(m in SHARED_LR for m in runs) and "adamw" not in runs:
        runs.insert(0, "adamw")  # they run at adamw's chosen lr
    runs = [m for m in methods if m in runs]  # adamw first
    if sweep_seeds not in SWEEP_SEEDS:
        raise ValueError(f"sweep_seeds must be one of {SWEEP_SEEDS}, not {sweep_seeds!r}")
    sweep_on = seeds if sweep_seeds == "all" else seeds[:1]
    if warmup is not None and warmup < 0:
        raise ValueError(f"--warmup: steps of warm-up, 0 or more, not {warmup}")
    sweep_steps = steps if sweep == "full" else (sweep_steps if sweep_steps is not None else max(1, steps // 3))
    root = Path(workdir or tempfile.mkdtemp(prefix="demo-node-bench-convergence-"))
    setups = {sd: _Setup(nodes, global_batch, windows, sd, model, device, warmup) for sd in seeds}
    params = parameter_count(model)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    # a healthy round of the tiny model takes well under a second; a larger model's step grows with its size
    timeout = 180 + 4.0 * steps * max(1, nodes / 2) * max(1.0, params / 1e6)

    def train(method: str, lr: float, n_steps: int, tag: str, sd: int) -> dict:
        log(f"[convergence] {method} lr {lr:g}, {n_steps} steps, seed {sd} ({tag})")
        s = setups[sd]
        warm = s.warm(n_steps)
        folder = root / f"{method}-{tag}-lr{lr:g}-seed{sd}"
        if method == "adamw":
            return _train_adamw(s, lr, n_steps, eval_every)
        if method == "reference-sim":
            return _train_reference(s, lr, n_steps, eval_every)
        if method in ("adamw-dense", "reference"):
            return convergence_procs.train_gloo(s, lr, n_steps, eval_every, folder, threads, warm, timeout,
                                                "dense" if method == "adamw-dense" else "reference")
        if method in HIVEMIND_VARIANTS:
            return convergence_procs.train_hivemind(s, lr, n_steps, eval_every, folder, threads, warm, timeout,
                                                    HIVEMIND_VARIANTS[method], hivemind_matchmaking)
        return _train_ours(s, lr, n_steps, eval_every, ours_variants[method], folder, threads, deadline, timeout)

    result: dict = {"model": model, "device": device,
                    "variants": {m: ours_variants[m] for m in runs if m in ours_variants}, "params": params,
                    "nodes": nodes, "steps": steps, "global_batch": global_batch,
                    "per_node_batch": global_batch // nodes, "windows": windows, "eval_every": eval_every,
                    "seeds": seeds, "data_seeds": {sd: [sd * 1000 + i for i in range(nodes)] for sd in seeds},
                    "warmup": setups[seeds[0]].warm(steps), "sweep": sweep, "sweep_steps": sweep_steps, "lrs": lrs,
                    "sweep_seeds": sweep_on,
                    "shared_lr": {m: SHARED_LR[m] for m in runs if m in SHARED_LR}, "workdir": str(root),
                    "hivemind_matchmaking_time": hivemind_matchmaking,
                    "dense_fp32_bytes_per_node_step": 2 * (nodes - 1) / nodes * 4 * params, "methods": {}}
    for method in runs:
        sweep_runs, kept = [], {}  # kept: (lr, seed) -> a full-horizon sweep run, which is that lr's full run
        if method in SHARED_LR:
            chosen = result["methods"].get(SHARED_LR[method], {}).get("lr")
            if chosen is None:
                result["methods"][method] = {"not_run": f"failed: {SHARED_LR[method]} has no lr"}
                continue
            best = chosen
        else:
            candidates = lrs[family[method]]
            best = candidates[0]
            if len(candidates) > 1 or sweep == "full":
                for lr in candidates:
                    losses = []
                    for sd in sweep_on:
                        try:
                            r = train(method, lr, sweep_steps, "sweep" if sweep == "short" else "full", sd)
                            losses.append(r["curve"][-1]["loss"])
                            if sweep == "full":
                                kept[(lr, sd)] = r
                        except Exception as exc:  # noqa: BLE001 - a failing lr is recorded, not fatal
                            sweep_runs.append({"lr": lr, "loss": None, "error": repr(exc)})
                            break
                    else:  # the lr's score: its mean final loss over the seeds it was swept on
                        sweep_runs.append({"lr": lr, "loss": statistics.mean(losses), "losses": losses})
                finite = [x for x in sweep_runs if x["loss"] is not None and math.isfinite(x["loss"])]
                best = min(finite, key=lambda x: x["loss"])["lr"] if finite else candidates[0]
        per_seed = []
        for sd in seeds:
            try:
                r = kept[(best, sd)] if (best, sd) in kept else train(method, best, steps, "full", sd)
            except Exception as exc:  # noqa: BLE001 - a failed method is reported, the others still run
                per_seed.append({"seed": sd, "error": repr(exc)})
                continue
            per_seed.append({"seed": sd, **r})
        done = [x for x in per_seed if "curve" in x and x["curve"]]
        if not done:
            result["methods"][method] = {"not_run": f"failed: {[x.get('error') for x in per_seed]}", "lr": best,
                                         "sweep": sweep_runs}
            continue
        main = done[0]
        finals = [x["curve"][-1]["loss"] for x in done]
        per_step = [x["curve"][-1]["bytes_sent"] / max(1, x["curve"][-1]["step"]) for x in done]
        result["methods"][method] = {
            "lr": best, "sweep": sweep_runs, **{k: v for k, v in main.items() if k != "seed"},
            "seed_runs": [{"seed": x["seed"], "final_loss": x["curve"][-1]["loss"], "bytes_per_node_step": b,
                           "seconds": x["seconds"]} for x, b in zip(done, per_step)],
            "failed_seeds": [x for x in per_seed if "error" in x],
            "final_loss": statistics.mean(finals),
            "final_loss_sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "final_loss_min": min(finals), "final_loss_max": max(finals),
            "bytes_per_node_step": statistics.mean(per_step)}
        if "bytes_accounted" in main["curve"][-1]:
            last = main["curve"][-1]
            result["methods"][method]["bytes_accounted_per_node_step"] = last["bytes_accounted"] / last["step"]
    m = result["methods"]
    base = m.get("adamw", {}).get("final_loss")
    ours = m.get("ours", {}).get("bytes_per_node_step")
    dense = result["dense_fp32_bytes_per_node_step"]
    for name, x in m.items():
        if "final_loss" in x:
            x["simulated"] = name == "reference-sim"
            x["loss_over_adamw"] = x["final_loss"] / base if base else None
            x["dense_over_bytes"] = dense / x["bytes_per_node_step"] if x["bytes_per_node_step"] else None
            x["bytes_over_ours"] = x["bytes_per_node_step"] / ours if ours else None
    if "final_loss" in m.get("adamw-dense", {}) and base:
        d = m["adamw-dense"]
        d["max_abs_diff_vs_adamw"] = max(abs(a["loss"] - b["loss"]) for a, b in zip(d["curve"], m["adamw"]["curve"]))
    result["targets"] = targets(result)
    return result


def targets(r: dict) -> dict:
    """The issue's targets, as ratios (printed, never asserted): ours against dense fp32, hivemind 8-bit, AdamW."""
    m = r["methods"]
    ours = m.get("ours", {})
    out: dict = {}
    if "bytes_per_node_step" in ours and ours["bytes_per_node_step"]:
        b = ours["bytes_per_node_step"]
        out["dense_ring_computed_over_ours"] = (r["dense_fp32_bytes_per_node_step"] / b, 100)
        if "bytes_per_node_step" in m.get("adamw-dense", {}):
            out["dense_gloo_measured_over_ours"] = (m["adamw-dense"]["bytes_per_node_step"] / b, 100)
        if "bytes_per_node_step" in m.get("hivemind-8bit", {}):
            out["hivemind_8bit_over_ours"] = (m["hivemind-8bit"]["bytes_per_node_step"] / b,
                                              20 if r["nodes"] <= 2 else 8)
    if ours.get("loss_over_adamw"):
        out["ours_loss_over_adamw"] = (ours["loss_over_adamw"], 1.02)
    return out


_HOW = {"adamw": "one process", "adamw-dense": "N processes, gloo all_reduce, bytes at the wire (ss)",
        "reference": "N processes, gloo all_gather, bytes at the wire (ss)",
        "reference-sim": "simulated in one process, bytes computed",
        "hivemind": "N peers, hivemind.Optimizer (AdamW), bytes at the wire (ss)",
        "hivemind-8bit": "N peers, hivemind.Optimizer (AdamW), 8-bit, bytes at the wire (ss)"}


def format_result(r: dict) -> str:
    lrs = f"best held-out loss after {r['sweep_steps']} steps" + (" (the full horizon)" if r["sweep"] == "full"
                                                                   else " (the short sweep)")
    family = "Llama" if r["model"].startswith("llama") else "GPT"
    lines = [(f"{r['model']} {family} ({r['params']:,} params) on {r.get('device', 'cpu')}, {r['steps']} "
              f"steps of a global batch of {r['global_batch']} "
             f"({r['nodes']} x {r['per_node_batch']}), held-out loss on {r['windows']} windows every "
             f"{r['eval_every']} steps; seeds {r['seeds']} (model seed s, worker i's data seed s*1000+i); warm-up "
             f"{r['warmup']}, cosine to 10%; lr: {lrs} of {r['lrs']} on seeds {r.get('sweep_seeds', r['seeds'][:1])}; "
             f"at adamw's lr: {', '.join(r['shared_lr']) or 'none'}"),
             f"dense fp32 ring all-reduce (computed): {r['dense_fp32_bytes_per_node_step']:,.0f} bytes per node, step",
             "",
             (f"{'method':<15}{'lr':>8}{'final loss':>12}{'sd':>8}{'/ adamw':>9}{'bytes/node/step':>17}{'/ ours':>9}"
              f"{'dense / this':>14}{'wall s':>9}  how")]
    for name, m in r["methods"].items():
        if "final_loss" not in m:
            lines.append(f"{name:<15}  {m['not_run']}")
            continue
        how = _HOW.get(name, f"N processes, bytes at the wire (ss); accounted "
                                   f"{m.get('bytes_accounted_per_node_step', 0):,.0f}")
        if m.get("epoch_jumps") and any(m["epoch_jumps"]):
            how += f"; epoch jumps {m['epoch_jumps']}"
        if m.get("partial_averages") and any(m["partial_averages"]):
            how += f"; PARTIAL all-reduces per peer {m['partial_averages']} (of {r['steps']})"
        if m.get("local_only_epochs") and any(m["local_only_epochs"]):
            how += f"; epochs with local gradients only, per peer {m['local_only_epochs']}"
        ratio = f"{m['loss_over_adamw']:.4f}" if m.get("loss_over_adamw") else ""
        dense = f"{m['dense_over_bytes']:.1f}" if m.get("dense_over_bytes") else ""
        vs_ours = f"{m['bytes_over_ours']:.1f}" if m.get("bytes_over_ours") else ""
        sd = f"{m['final_loss_sd']:.4f}" if len(m["seed_runs"]) > 1 else ""
        lines.append(f"{name:<15}{m['lr']:>8g}{m['final_loss']:>12.4f}{sd:>8}{ratio:>9}"
                     f"{m['bytes_per_node_step']:>17,.0f}{vs_ours:>9}{dense:>14}{m['seconds']:>9.1f}  {how}")
    if len(r["seeds"]) > 1:
        lines += ["", "final loss per seed:"]
        for name, m in r["methods"].items():
            if "seed_runs" in m:
                lines.append(f"  {name:<13}" + "   ".join(f"{x['seed']}: {x['final_loss']:.4f}"
                                                          for x in m["seed_runs"]))
    if "max_abs_diff_vs_adamw" in r["methods"].get("adamw-dense", {}):
        lines += ["", f"adamw-dense (gloo) vs adamw, largest held-out loss difference on the curve: "
                      f"{r['methods']['adamw-dense']['max_abs_diff_vs_adamw']:.2e}"]
    if r.get("targets"):
        names = {"dense_ring_computed_over_ours": "dense fp32 (ring, computed) / ours",
                 "dense_gloo_measured_over_ours": "dense fp32 (gloo, measured) / ours",
                 "hivemind_8bit_over_ours": "hivemind 8-bit / ours", "ours_loss_over_adamw": "ours loss / adamw"}
        lines += ["", "targets (printed, not asserted):"]
        for key, (value, goal) in r["targets"].items():
            sense = "<=" if key == "ours_loss_over_adamw" else ">="
            lines.append(f"  {names[key]:<36}{value:>10.4g}   target {sense} {goal}   "
                         f"{'met' if (value <= goal if sense == '<=' else value >= goal) else 'NOT met'}")
    sweeps = [(n, m["sweep"]) for n, m in r["methods"].items() if m.get("sweep")]
    if sweeps:
        on = r.get("sweep_seeds", r["seeds"][:1])
        lines += ["", f"lr sweep (held-out loss after {r['sweep_steps']} steps, "
                      f"{'seed ' + str(on[0]) if len(on) == 1 else 'mean of seeds ' + ','.join(map(str, on))}):"]
        for name, sw in sweeps:
            lines.append(f"  {name:<13}" + "   ".join(
                f"{x['lr']:g}: {x['loss']:.4f}" if x["loss"] is not None else f"{x['lr']:g}: failed" for x in sw))
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
