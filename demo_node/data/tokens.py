"""A corpus as token ids: the training and held-out splits of a source under one tokenizer, and its spec, which
names it by content (never by path) so that peers with the same data at different paths agree."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from demo_node.data.arrays import TokenArray
from demo_node.data.encode import encode_split, memory_dtype
from demo_node.data.errors import DataError
from demo_node.data.limits import MAX_CORPUS_BYTES
from demo_node.data.shards import read_shards, verify_shards
from demo_node.data.sources import source_format, split_documents
from demo_node.data.tokenizer import Tokenizer


def fingerprint(tokenizer_sha256: str, train_tokens: int, train_digest: str, held_out_tokens: int,
                held_out_digest: str) -> str:
    """Hex sha256 naming a corpus's content: its tokenizer and the ids of both splits (see TokenArray.digest)."""
    text = (f"demo-node corpus 1\ntokenizer {tokenizer_sha256}\ntrain {train_tokens} {train_digest}\n"
            f"held-out {held_out_tokens} {held_out_digest}\n")
    return hashlib.sha256(text.encode()).hexdigest()


class TokenCorpus:
    """``train`` and ``held_out``: TokenArrays (memory-mapped for shards); ``spec``: what peers compare."""

    def __init__(self, train: TokenArray, held_out: TokenArray, vocab_size: int, tokenizer_sha256: str, fmt: str,
                 known_fingerprint: str | None = None):
        self.train, self.held_out = train, held_out
        self.vocab_size, self.tokenizer_sha256, self.format = vocab_size, tokenizer_sha256, fmt
        self._fingerprint = known_fingerprint

    @functools.cached_property
    def fingerprint(self) -> str:
        # hashing reads every token once: done when first asked, not at open
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.tokenizer_sha256, len(self.train), self.train.digest(),
                                            len(self.held_out), self.held_out.digest())
        return self._fingerprint

    @property
    def spec(self) -> dict[str, Any]:
        return {"format": self.format, "fingerprint": self.fingerprint, "train_tokens": len(self.train),
                "held_out_tokens": len(self.held_out), "tokenizer": self.tokenizer_sha256}

    def __repr__(self) -> str:
        return (f"TokenCorpus({self.format}, {len(self.train)} train + {len(self.held_out)} held-out tokens, "
                f"vocab {self.vocab_size})")


def open_corpus(source: str, tokenizer: Tokenizer, max_bytes: int | None = MAX_CORPUS_BYTES, field: str = "text",
                verify: bool = False) -> TokenCorpus:
    """The corpus ``source`` names, tokenized: "stdlib", a text, JSON-lines or Parquet file or a folder of them
    (the first ``max_bytes`` of text, tokenized here), or a folder of token shards (read whole, memory-mapped; its
    tokenizer must be this one; ``verify`` re-hashes every shard first)."""
    fmt = source_format(source)
    if fmt == "tokens":
        return _open_shards(Path(source), tokenizer, verify)
    train: list[np.ndarray] = []
    held_out: list[np.ndarray] = []
    for held, ids in encode_split(split_documents(source, max_bytes, field), tokenizer):
        (held_out if held else train).append(ids)
    dtype = memory_dtype(tokenizer.vocab_size)
    # one array per split: a window is then always a view
    parts = [np.concatenate(p) if p else np.zeros(0, dtype) for p in (train, held_out)]
    return TokenCorpus(TokenArray([parts[0]]), TokenArray([parts[1]]), tokenizer.vocab_size, tokenizer.sha256, fmt)


def _open_shards(folder: Path, tokenizer: Tokenizer, verify: bool) -> TokenCorpus:
    if verify:
        verify_shards(folder)
    meta, train, held_out = read_shards(folder)
    theirs = meta["tokenizer"].get("sha256")
    if theirs != tokenizer.sha256:
        kind = meta["tokenizer"].get("kind")
        raise DataError(f"--data {folder}: its shards were made with tokenizer {theirs} ({kind}), not this run's "
                        f"{tokenizer.sha256} ({tokenizer.kind}); its own is {folder / 'tokenizer.json'}")
    return TokenCorpus(train, held_out, tokenizer.vocab_size, tokenizer.sha256, "tokens", meta["fingerprint"])


def documents_for_tokenizer(source: str, max_bytes: int | None = MAX_CORPUS_BYTES,
                            field: str = "text") -> Iterator[str]:
    """The training split's text of the first ``max_bytes`` of the source (what a BPE for it is trained on: the
    held-out text never)."""
    if source_format(source) == "tokens":
        raise DataError(f"--data {source}: a folder of token shards is tokenized already: use its tokenizer "
                        f"(--tokenizer file --tokenizer-file {Path(source) / 'tokenizer.json'})")
    return (text for held, text in split_documents(source, max_bytes, field) if not held)
