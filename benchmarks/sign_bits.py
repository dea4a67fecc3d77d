"""Could sign exchange send fewer than one bit per parameter? How far the update's signs compress.

In sign exchange an owner sends every node one bit per parameter of its shard: the sign of IDCT(aggregate). That bit
is five-sixths of what a node moves at 1B parameters (docs/scale-model.md) and bounds the ratio to dense fp32
averaging at 64x. This trains a GPT preset the way `python -m benchmarks robust` does (N peers' contributions in one
process, the shared parameters stepped by the signs of their robust aggregate) and, at a few steps, sets the bits an
owner would send (the blocks with any nonzero sign: all-zero blocks are not sent) against what general compressors
make of them and against their empirical entropy given the left and the upper neighbour in the block (a bound for
a context-modelling coder over that context). Run: ``python benchmarks/sign_bits.py --model tiny --peers 8``.
"""

from __future__ import annotations

import argparse
import bz2
import lzma
import zlib

import numpy as np
import torch

from demo_node.core.optimizer import DeMo
from demo_node.data.stream import WindowStream
from demo_node.data.tokenizer import byte_tokenizer
from demo_node.data.tokens import open_corpus
from demo_node.models.gpt import PRESETS, build
from demo_node.swarm.shard_signs import ShardSigns


def context_entropy_bits(bits: np.ndarray) -> float:
    """Empirical entropy of (blocks, h, w) bits given each bit's left and upper neighbour (0 at an edge), in bits."""
    left = np.zeros_like(bits)
    left[:, :, 1:] = bits[:, :, :-1]
    up = np.zeros_like(bits)
    up[:, 1:, :] = bits[:, :-1, :]
    context, flat = (2 * left + up).ravel(), bits.ravel()
    total = 0.0
    for c in range(4):
        ones, n = int(flat[context == c].sum()), int((context == c).sum())
        for count in (ones, n - ones):
            if count:
                total -= count * np.log2(count / n)
    return total


def measure(update: dict) -> dict:
    """Bytes of the sent blocks' sign bits, packed and compressed, and their context entropy."""
    packed, entropy = [], 0.0
    for _, signs in update.values():
        sent = signs[(signs != 0).flatten(1).any(dim=1)]
        bits = (sent > 0).to(torch.uint8).numpy()
        packed.append(np.packbits(bits.ravel()).tobytes())
        entropy += context_entropy_bits(bits)
    raw = b"".join(packed)
    return {"packed": len(raw), "zlib": len(zlib.compress(raw, 9)), "lzma": len(lzma.compress(raw)),
            "bz2": len(bz2.compress(raw, 9)), "context_entropy": entropy / 8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", choices=[m for m in PRESETS if m != "1b"])
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=3, help="sequences per peer and step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--at", default="5,20,60", help="steps at which to measure; the last one ends the run")
    a = ap.parse_args()
    at = sorted({int(s) for s in a.at.split(",")})
    corpus = open_corpus("stdlib", byte_tokenizer())
    model = build(a.model, seed=0)
    params = list(model.parameters())
    opts = [DeMo(params, lr=a.lr) for _ in range(a.peers)]
    streams = [WindowStream(corpus, PRESETS[a.model].context, a.batch, i) for i in range(a.peers)]
    signs = ShardSigns(opts[0].layout, "selected", max_sample_weight=4096)
    print(f"{a.model}, {opts[0].layout.num_params:,} parameters, {a.peers} peers x {a.batch} sequences, lr {a.lr}; "
          "bytes of the signs sent, and compressed / packed")
    for step in range(1, at[-1] + 1):
        contributions = []
        for opt, stream in zip(opts, streams):
            x, y = stream.next()
            model.zero_grad(set_to_none=True)
            model(x, y).backward()
            contributions.append(opt.prepare(samples=a.batch))
        update = signs.signs(contributions)
        if step in at:
            m = measure(update)
            ratios = ", ".join(f"{k} {m[k] / m['packed']:.3f}" for k in ("zlib", "lzma", "bz2", "context_entropy"))
            print(f"  step {step:4d}: packed {m['packed']:,} B; {ratios}")
        opts[0].apply_signs([(b, start, s) for b, (start, s) in update.items()])


if __name__ == "__main__":
    main()
