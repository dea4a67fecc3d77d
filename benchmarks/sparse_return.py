"""``python -m benchmarks sparse-return``: sign exchange against a sparse return path, in convergence and bytes.

N peers are simulated in one process with the package's math and no network (as ``robust`` does): every peer has
its own DeMo momentum and batches, all share one model. Each step the peers' contributions are aggregated with the
run's robust rule, then either

- ``sign``: every parameter gets sign(IDCT(aggregate)), what sign exchange applies today (one bit per parameter on
  the wire), or
- ``top<K>``: the aggregate is cut to its K largest coefficients per block (``core/resparsify.py``), their values
  quantised to int8 with a per-block scale (``q<bits>``: other widths; ``q1``: signs, as the node's cut carries
  them), and every parameter gets
  sign(IDCT(cut)); what the cut dropped of each peer's contribution goes back into that peer's momentum (error
  feedback); ``top<K>-noef`` drops it.

Same seeds, data order and initial parameters for every variant. It prints the final held-out loss per seed and
their mean against ``sign``'s, how often the cut update's signs agree with the full one's (over parameters whose
full sign is not zero), and the return path's bytes per parameter: 1/8 for signs; for a cut, K coefficients per
block at 8 bits of value plus a 32-bit block scale, their indices as the codec writes a payload's (Elias-Fano where
cheapest), or at log2 C(block, K) / K bits per index with an ideal entropy coder.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.robust_bench import held_out
from demo_node.commands.common import emit
from demo_node.core.aggregate import Aggregate, AggregatePart
from demo_node.core.config import VALUE_MODES
from demo_node.core.contribution import Contribution
from demo_node.core.optimizer import DeMo
from demo_node.core.quantize import quantize
from demo_node.core.resparsify import dense_blocks, dropped, top_per_block
from demo_node.core.update import SignComputer
from demo_node.data.stream import WindowStream, held_out_windows
from demo_node.data.tokenizer import byte_tokenizer
from demo_node.data.tokens import TokenCorpus, open_corpus
from demo_node.models.gpt import PRESETS, build
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.bitpack import bits_for, elias_fano_high_len, elias_fano_low_bits


@dataclass(frozen=True)
class Variant:
    k: int
    """Coefficients per block of the cut (0: sign exchange, no cut)."""
    feedback: bool = False
    """What the cut dropped of each peer's contribution goes back into its momentum."""
    vote: bool = False
    """Rank the cut's coefficients by support (see :func:`cut_aggregate`)."""
    bits: int = 8
    """Bits per value of the cut (8: int8; 1: sign values times the block's mean magnitude, as the node's sparse
    exchange sends them, the payloads' ``sign`` coding)."""


def parse_variant(name: str) -> Variant:
    """'sign'; 'top<K>[q<bits>][-noef]' (the cut, with error feedback unless -noef, int8 values unless q<bits>, q1:
    sign values);
    'vote<K>...' the same with the cut ranked by support."""
    if name == "sign":
        return Variant(0)
    base, _, suffix = name.partition("-")
    kind = "vote" if base.startswith("vote") else "top" if base.startswith("top") else ""
    count, _, bits = base[len(kind):].partition("q")
    if not kind or not count.isdigit() or int(count) <= 0 or suffix not in ("", "noef") or \
            (bits and (not bits.isdigit() or not 1 <= int(bits) <= 8)):
        raise ValueError(f"unknown variant {name!r}: sign, top<K>[q<bits>][-noef], vote<K>[q<bits>][-noef]")
    return Variant(int(count), suffix == "", kind == "vote", int(bits or 8))


def quantized(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Values rounded to ``bits``-bit codes with a per-block scale (8: exactly the codec's int8; 1: its sign
    coding), dequantised."""
    if bits in (1, 8):
        return quantize(values, "sign" if bits == 1 else "int8").dequantize()
    top = 2 ** (bits - 1) - 1
    scale = values.abs().amax(dim=1, keepdim=True) / top
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(values / safe).clamp_(-top, top) * scale


def cut_aggregate(agg: Aggregate, block_sizes: dict[int, int], v: Variant) -> Aggregate:
    """The aggregate's top k per block, values quantised with a per-block scale (as a result on the wire would be).
    ``vote``: coefficients ranked by |value| x how many peers selected them (the 'all' rule's magnitude: a
    coefficient many peers agree on beats one peer's large value), their values still the aggregate's."""
    parts = {}
    for b, part in agg.parts.items():
        if v.vote:
            dense = dense_blocks(part, block_sizes[b])
            support = torch.zeros_like(dense).scatter_add_(1, part.indices, torch.ones_like(part.coeff))
            order = torch.sort((dense * support).abs(), dim=1, descending=True, stable=True).indices[:, :v.k]
            indices = order.sort(dim=1).values
            top = AggregatePart(part.start, indices, dense.gather(1, indices))
        else:
            top = top_per_block(part, block_sizes[b], v.k)
        parts[b] = AggregatePart(top.start, top.indices, quantized(top.coeff, v.bits))
    return Aggregate(parts, agg.peers, agg.samples)


def train(variant: str, peers: int, steps: int, model_name: str, batch: int, lr: float, warmup: int, windows: int,
          seed: int, corpus: TokenCorpus, values: str = "int8") -> dict:
    v = parse_variant(variant)
    k, feedback = v.k, v.feedback
    context = PRESETS[model_name].context
    model = build(model_name, seed=seed)
    params = list(model.parameters())
    opts = [DeMo(params, lr=lr, values=values) for _ in range(peers)]
    streams = [WindowStream(corpus, context, batch, seed * 1000 + i) for i in range(peers)]
    layout = opts[0].layout
    block_sizes = {b.index: b.block_size for b in layout.buckets}
    rule = ShardSigns(layout, "selected", robust=True, max_sample_weight=4096)
    computer = SignComputer(layout)
    hx, hy = held_out_windows(corpus, context, windows)
    agree, began = [], time.monotonic()
    for step in range(steps):
        factor = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        contributions = []
        for opt, stream in zip(opts, streams):
            for g in opt.param_groups:
                g["lr"] = lr * factor
            x, y = stream.next()
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            contributions.append(opt.prepare(samples=batch))
        agg = rule.aggregate(contributions)
        full = {b: (start, s.clone()) for b, (start, s) in computer.signs(agg).items()}
        if k == 0:
            update = full
        else:
            cut = cut_aggregate(agg, block_sizes, v)
            update = computer.signs(cut)
            same = total = 0
            for b, (_, s) in update.items():
                nonzero = full[b][1] != 0
                same += int((s[nonzero] == full[b][1][nonzero]).sum())
                total += int(nonzero.sum())
            agree.append(same / max(total, 1))
            if feedback:
                for opt, c in zip(opts, contributions):
                    opt.restore(Contribution({b: dropped(p, cut.parts[b].indices) for b, p in c.parts.items()}))
        opts[0].apply_signs([(b, start, s) for b, (start, s) in update.items()])
    return {"variant": variant, "final": held_out(model, hx, hy), "sign_agreement": statistics.fmean(agree) if agree
            else 1.0, "seconds": round(time.monotonic() - began, 1), "bytes_per_param": return_bytes(layout, k, v.bits)}


def return_bytes(layout, k: int, bits: int = 8) -> dict[str, float]:
    """The return path's bytes per parameter: signs, or a cut with indices as the codec writes them and ideally
    coded."""
    if k == 0:
        return {"coded": 1 / 8, "ideal": 1 / 8}
    coded = ideal = 0.0
    for b in layout.buckets:
        kk = min(k, b.block_size)
        index_bits = math.lgamma(b.block_size + 1) - math.lgamma(kk + 1) - math.lgamma(b.block_size - kk + 1)
        per_block_ideal = index_bits / math.log(2) + bits * kk + 32
        codec_bits = 0 if kk == b.block_size else min(
            kk * bits_for(b.block_size), b.block_size,
            kk * elias_fano_low_bits(kk, b.block_size) + elias_fano_high_len(kk, b.block_size))
        per_block_coded = codec_bits + bits * kk + 32
        coded += b.num_blocks * per_block_coded / 8
        ideal += b.num_blocks * per_block_ideal / 8
    return {"coded": coded / layout.num_params, "ideal": ideal / layout.num_params}


def run(variants: list[str], seeds: list[int], peers: int = 8, steps: int = 145, model: str = "tiny",
        batch: int = 8, lr: float = 3e-3, warmup: int = 40, windows: int = 256, values: str = "int8") -> dict:
    corpus = open_corpus("stdlib", byte_tokenizer())
    results = {v: [train(v, peers, steps, model, batch, lr, warmup, windows, s, corpus, values) for s in seeds]
               for v in variants}
    return {"peers": peers, "steps": steps, "model": model, "batch": batch, "lr": lr, "warmup": warmup,
            "windows": windows, "values": values, "seeds": seeds, "results": results}


SETTINGS = ("peers", "steps", "model", "batch", "lr", "warmup", "windows", "values")


def pool(results: list[dict]) -> dict:
    """Several runs' results (the same settings, other seeds) as one: each variant's runs side by side, the seeds
    in the order given; a variant some files lack is left out (its mean would cover other seeds)."""
    results = [{"values": "int8", **r} for r in results]  # files written before --values existed
    first = results[0]
    for r in results[1:]:
        differ = [k for k in SETTINGS if r[k] != first[k]]
        if differ:
            raise ValueError(f"results with different settings cannot be pooled: {', '.join(differ)}")
    variants = [v for v in first["results"] if all(v in r["results"] for r in results)]
    return {**{k: first[k] for k in SETTINGS}, "seeds": [s for r in results for s in r["seeds"]],
            "results": {v: [x for r in results for x in r["results"][v]] for v in variants}}


def format_result(r: dict) -> str:
    res = r["results"]
    base = statistics.fmean(x["final"] for x in res["sign"]) if "sign" in res else None
    lines = [f"{r['peers']} peers simulated in one process, {r['model']} GPT, batch {r['batch']} each, lr {r['lr']} "
             f"(warm-up {r['warmup']}, cosine to 0.1), {r['steps']} steps, {r.get('values', 'int8')} payloads, "
             f"held-out loss on {r['windows']} windows",
             f"{'variant':<12}" + "".join(f"{'seed ' + str(s):>10}" for s in r["seeds"])
             + f"{'mean':>10}{'/ sign':>9}{'signs agree':>13}{'B/param coded':>15}{'ideal':>8}"]
    for v, runs in res.items():
        mean = statistics.fmean(x["final"] for x in runs)
        ratio = f"{mean / base:>9.4f}" if base else f"{'':>9}"
        agree = statistics.fmean(x["sign_agreement"] for x in runs)
        b = runs[0]["bytes_per_param"]
        lines.append(f"{v:<12}" + "".join(f"{x['final']:>10.4f}" for x in runs)
                     + f"{mean:>10.4f}{ratio}{agree:>13.3f}{b['coded']:>15.4f}{b['ideal']:>8.4f}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    sp = sub.add_parser("sparse-return", help="sign exchange against an aggregate cut to its top K per block: N "
                        "peers simulated in one process, held-out loss, sign agreement and bytes")
    sp.add_argument("--variants", default="sign,top32,top64,top32-noef",
                    help="comma-separated: sign, top<K>[q<bits>] (with error feedback), ...-noef (without), vote<K>... "
                    "(ranked by support); q<bits>: bits per value of the cut, 1 = sign (default: %(default)s)")
    sp.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    sp.add_argument("--peers", type=int, default=8, help="peers simulated in one process (default 8)")
    sp.add_argument("--steps", type=int, default=145, help="training steps (default 145)")
    sp.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    sp.add_argument("--batch", type=int, default=8, help="sequences per peer and step (default 8)")
    sp.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    sp.add_argument("--warmup", type=int, default=40, help="linear lr warm-up steps (default 40)")
    sp.add_argument("--windows", type=int, default=256, help="held-out windows (default 256)")
    sp.add_argument("--values", default="int8", choices=VALUE_MODES, help="the peers' payload values (default: int8)")
    sp.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    sp.add_argument("--pool", nargs="+", metavar="JSON", help="run nothing: print the results of earlier runs (their "
                    "--json files, the same settings, other seeds) as one table over all their seeds")
    sp.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    sp.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.pool:
        try:
            result = pool([json.loads(Path(p).read_text()) for p in args.pool])
        except (OSError, ValueError, KeyError) as exc:
            print(f"sparse-return --pool: {exc}")
            return 2
        emit(result, format_result(result), args.json)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for v in variants:
            parse_variant(v)
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as exc:
        print(f"sparse-return: {exc}")
        return 2
    result = run(variants, seeds, peers=args.peers, steps=args.steps, model=args.model, batch=args.batch,
                 lr=args.lr, warmup=args.warmup, windows=args.windows, values=args.values)
    emit(result, format_result(result), args.json)
    return 0
