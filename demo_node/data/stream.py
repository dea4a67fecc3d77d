"""Each node's stream of training windows, and the held-out windows every node evaluates on.

The training tokens are cut into W aligned windows of context+1 tokens. One permutation of them, fixed by the
corpus, is a cycle every node walks from its own start (its seed mod W): two nodes read different windows until one
reaches where the other began, and a node that resumes at its position reads on exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from demo_node.data.errors import DataError
from demo_node.data.tokens import TokenCorpus

GOLDEN = (math.sqrt(5) - 1) / 2
"""Steps of about W times this spread consecutive windows evenly over the corpus (the three-distance theorem)."""


def node_seed(run_seed: int, peer_id: bytes) -> int:
    """A stream's seed: the run's seed and the node's peer id (plus a rank byte for the other processes of a
    node), so every node starts elsewhere and a node that restarts with its identity starts where it did."""
    return int.from_bytes(hashlib.sha256(run_seed.to_bytes(8, "little") + peer_id).digest()[:8], "little")


def affine_permutation(windows: int, key: bytes) -> tuple[int, int]:
    """(a, b) with a coprime to ``windows``: i -> (a*i + b) mod windows is then a permutation, free to evaluate at
    any i, however many windows there are."""
    if windows <= 1:
        return 1, 0
    h = int.from_bytes(hashlib.sha256(key).digest()[:16], "little")
    a = max(1, round(windows * GOLDEN))
    while math.gcd(a, windows) != 1:
        a += 1
    return a % windows or 1, h % windows


class WindowStream:
    """This node's (inputs, targets) batches: ``batch_size`` windows of the corpus's permutation at a time, from its
    start ``seed mod W``; ``position`` counts the windows read, ``restore`` goes back to one."""

    def __init__(self, corpus: TokenCorpus, context: int, batch_size: int, seed: int):
        if context < 1 or batch_size < 1:
            raise ValueError(f"context ({context}) and batch_size ({batch_size}) must be at least 1")
        self.data, self.context, self.batch_size = corpus.train, context, batch_size
        self.vocab_size = corpus.vocab_size
        self.windows = len(self.data) // (context + 1)
        if self.windows < 1:
            raise DataError(f"the corpus's training split ({len(self.data)} tokens) is shorter than one window of "
                            f"context+1 = {context + 1} tokens: use more data or a shorter context")
        self.a, self.b = affine_permutation(self.windows, f"{corpus.fingerprint} {context}".encode())
        self.start = seed % self.windows
        self.position = 0

    def window_index(self, position: int) -> int:
        """The window this node reads at ``position`` (windows read before it)."""
        return (self.a * ((self.start + position) % self.windows) + self.b) % self.windows

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        length = self.context + 1
        rows = [self.data.read(self.window_index(self.position + k) * length, length) for k in range(self.batch_size)]
        self.position += self.batch_size
        batch = np.stack(rows)
        if int(batch.max()) >= self.vocab_size:
            # shards are trusted by their meta.json's fingerprint, not re-hashed at start: a damaged one would
            # otherwise index past the embedding (on a GPU, a device-side assert that stalls every rank)
            raise DataError(f"token id {int(batch.max())} in the training data is outside the tokenizer's "
                            f"{self.vocab_size}: the data's token shards are damaged: prepare them again")
        windows = torch.from_numpy(batch.astype(np.int64))
        return windows[:, :-1], windows[:, 1:]

    def restore(self, position: int) -> None:
        if position < 0:
            raise ValueError(f"a stream position is a count of windows read, not {position}")
        self.position = int(position)


def held_out_windows(corpus: TokenCorpus, context: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows evenly spaced over the held-out tokens, the same on every node (the tokens repeated end to end
    when there are too few for one window)."""
    data = corpus.held_out
    if len(data) == 0:
        raise DataError("the corpus has no held-out tokens to evaluate on")
    length = context + 1
    if len(data) <= length:
        tokens = data.numpy()
        tokens = np.concatenate([tokens] * (length // len(tokens) + 2))
        rows = [tokens[:length]] * n
    else:
        span = len(data) - length
        rows = [data.read((i * span) // n, length) for i in range(n)]
    windows = torch.from_numpy(np.stack(rows).astype(np.int64)) if rows else torch.zeros(0, length, dtype=torch.long)
    return windows[:, :-1], windows[:, 1:]
