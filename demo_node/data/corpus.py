"""Byte-level text corpora and each node's own deterministic stream of training sequences (the first data layer;
``tokens`` and ``stream`` are its successors for any tokenizer and format).

The default corpus is the source of the Python standard library, present wherever Python is, so a swarm trains
with no download. Files are read in sorted order; every 50th file is held out for evaluation. A node draws its
training windows with a generator seeded by (run seed, its peer id), so nodes see different data, and a node that
restarts with the same identity sees the same stream again.
"""

from __future__ import annotations

import hashlib

import torch

from demo_node.data.limits import HELD_OUT_EVERY, MAX_CORPUS_BYTES
from demo_node.data.sources import files_of

__all__ = ["HELD_OUT_EVERY", "MAX_CORPUS_BYTES", "Batches", "Corpus", "files_of", "held_out_batch", "node_seed"]


class Corpus:
    """Train and held-out byte tensors of one source."""

    def __init__(self, source: str = "stdlib", max_bytes: int = MAX_CORPUS_BYTES):
        train, held = bytearray(), bytearray()
        for i, f in enumerate(files_of(source)):
            try:
                data = f.read_bytes()
            except OSError:
                continue
            (held if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else train).extend(data + b"\n\n")
            if len(train) + len(held) >= max_bytes:
                break
        if len(train) < 4096 or len(held) < 1024:
            # a single small file: hold out its last tenth instead
            whole = bytes(train + held)
            cut = len(whole) * 9 // 10
            train, held = bytearray(whole[:cut]), bytearray(whole[cut:])
        if len(held) < 2:
            raise ValueError(f"--data {source}: too little text to train on")
        self.source = source
        self.train = torch.frombuffer(bytearray(train), dtype=torch.uint8)
        self.held_out = torch.frombuffer(bytearray(held), dtype=torch.uint8)


def node_seed(run_seed: int, peer_id: bytes) -> int:
    return int.from_bytes(hashlib.sha256(run_seed.to_bytes(8, "little") + peer_id).digest()[:8], "little")


class Batches:
    """This node's stream of (inputs, targets) batches of byte sequences."""

    def __init__(self, corpus: Corpus, context: int, batch_size: int, seed: int):
        if len(corpus.train) <= context + 1:
            raise ValueError(f"the corpus ({len(corpus.train)} bytes) is shorter than one sequence")
        self.data, self.context, self.batch_size = corpus.train, context, batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.data) - self.context - 1, (self.batch_size,), generator=self.gen)
        windows = torch.stack([self.data[s : s + self.context + 1] for s in starts.tolist()]).long()
        return windows[:, :-1], windows[:, 1:]

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)


def held_out_batch(corpus: Corpus, context: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same evaluation windows on every node: evenly spaced over the held-out text."""
    data = corpus.held_out
    span = max(1, len(data) - context - 1)
    starts = [(i * span) // batch_size for i in range(batch_size)]
    if len(data) <= context + 1:
        data = torch.cat([data] * ((context + 2) // max(1, len(data)) + 1))
    windows = torch.stack([data[s : s + context + 1] for s in starts]).long()
    return windows[:, :-1], windows[:, 1:]

