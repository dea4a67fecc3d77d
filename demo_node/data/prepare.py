"""``demo-node data prepare``: a corpus tokenized once into a folder of token shards that every run then maps
instead of tokenizing again at start."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from demo_node.data.encode import encode_split
from demo_node.data.errors import DataError
from demo_node.data.limits import MAX_CORPUS_BYTES
from demo_node.data.shards import TOKENIZER, ShardWriter, shard_dtype
from demo_node.data.sources import file_format, files_of, source_format, split_documents
from demo_node.data.tokenizer import Tokenizer
from demo_node.data.tokens import fingerprint

SHARD_TOKENS = 100_000_000
"""Tokens a training shard holds (200 MB as uint16): few files, each small enough to copy or check on its own."""


def prepare(source: str, out_dir: str | Path, tokenizer: Tokenizer, max_bytes: int | None = MAX_CORPUS_BYTES,
            shard_tokens: int = SHARD_TOKENS, field: str = "text", dtype: str | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Tokenize SOURCE ("stdlib", a text, JSON-lines or Parquet file, or a folder of them) into the new folder
    OUT_DIR: train-00000.bin ... (SHARD_TOKENS tokens each) and held-out.bin, the same split a run of SOURCE
    would make (every 50th document held out), from the first MAX_BYTES bytes of text; meta.json (the tokenizer's
    hash, dtype, token counts, each file's sha256) and tokenizer.json beside them. A run given OUT_DIR as --data
    trains on exactly what it would have from SOURCE with this tokenizer and MAX_BYTES (the same data fingerprint),
    without tokenizing at start. FIELD: the JSON field or Parquet column of the text. DTYPE: "uint16" or "uint32"
    (default: uint16 when the vocabulary fits). Returns the meta.json written."""
    fmt = source_format(source)
    if fmt == "tokens":
        raise DataError(f"--data {source}: already a folder of token shards")
    dtype = dtype or shard_dtype(tokenizer.vocab_size)
    if dtype == "uint16" and tokenizer.vocab_size > 1 << 16:
        raise DataError(f"a vocabulary of {tokenizer.vocab_size} tokens does not fit uint16: use uint32")
    started = time.monotonic()
    writer = ShardWriter(out_dir, dtype, shard_tokens)
    try:
        with tqdm(total=_text_estimate(source, max_bytes), unit="B", unit_scale=True, file=sys.stderr,
                  disable=not progress, desc="tokenizing") as bar:
            for held, ids in encode_split(_counted(split_documents(source, max_bytes, field), bar), tokenizer):
                writer.add(held, ids)
        (writer.folder / TOKENIZER).write_text(tokenizer.to_json())
        n_train, n_held = writer.tokens(False), writer.tokens(True)
        meta = writer.finish(
            tokenizer={"kind": tokenizer.kind, "sha256": tokenizer.sha256, "vocab_size": tokenizer.vocab_size},
            fingerprint=fingerprint(tokenizer.sha256, n_train, writer.digest(False), n_held, writer.digest(True)),
            source={"format": fmt, "max_bytes": max_bytes, "field": field},
        )
    except BaseException:
        writer.abort()
        raise
    seconds = time.monotonic() - started
    print(f"{out_dir}: {n_train:,} training + {n_held:,} held-out tokens ({dtype}) in {len(meta['train'])} "
          f"training shard(s) + held-out.bin, {seconds:.1f} s")
    return meta


def _counted(documents: Iterable[tuple[bool, str]], bar: tqdm) -> Iterator[tuple[bool, str]]:
    for held, text in documents:
        bar.update(len(text.encode("utf-8")))
        yield held, text


def _text_estimate(source: str, max_bytes: int | None) -> int | None:
    """About how many bytes of text the source holds, for the progress bar: its files' sizes (a Parquet file's
    uncompressed ones), at most max_bytes."""
    total = sum(_size(path, source != "stdlib" and file_format(path) == "parquet") for path in files_of(source))
    return total if max_bytes is None else min(total, max_bytes)


def _size(path: Path, parquet: bool) -> int:
    try:
        if parquet:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return path.stat().st_size
    except (OSError, ValueError):  # a file that cannot be read fails properly when it is read: this is a guess
        return 0
