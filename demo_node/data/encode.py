"""Documents to token ids, many at a time: each document's ids followed by the tokenizer's separator, in order, as
arrays of one split at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from demo_node.data.tokenizer import BYTES_SEPARATOR, Tokenizer

BATCH_BYTES = 1 << 20
BATCH_DOCUMENTS = 1024
"""A batch for the Rust encoder: enough text to keep its threads busy, little enough to show progress."""


def memory_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id."""
    return np.dtype(np.uint8 if vocab_size <= 1 << 8 else np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def encode_split(documents: Iterable[tuple[bool, str]], tokenizer: Tokenizer) -> Iterator[tuple[bool, np.ndarray]]:
    """(held_out, ids) for runs of (held_out, text) documents: the ids of each run's documents, each followed by
    the separator. Documents of one split keep their order."""
    batch: list[tuple[bool, str]] = []
    size = 0
    for held, text in documents:
        batch.append((held, text))
        size += len(text)
        if size >= BATCH_BYTES or len(batch) >= BATCH_DOCUMENTS:
            yield from _encode(batch, tokenizer)
            batch, size = [], 0
    if batch:
        yield from _encode(batch, tokenizer)


def _encode(batch: list[tuple[bool, str]], tokenizer: Tokenizer) -> Iterator[tuple[bool, np.ndarray]]:
    dtype = memory_dtype(tokenizer.vocab_size)
    if tokenizer.kind == "bytes":
        # the bytes are the ids: no list of Python ints on the way
        for held in (False, True):
            data = b"".join(t.encode("utf-8") + BYTES_SEPARATOR for h, t in batch if h == held)
            if data:
                yield held, np.frombuffer(data, dtype=np.uint8).astype(dtype)
        return
    ids = tokenizer.encode_batch([t for _, t in batch])
    separator = tokenizer.separator
    for held in (False, True):
        flat: list[int] = []
        for (h, _), doc in zip(batch, ids):
            if h == held:
                flat += doc
                flat += separator
        if flat:
            yield held, np.array(flat, dtype=dtype)
