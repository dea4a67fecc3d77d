"""The folder of token shards that ``prepare`` writes and a node reads memory-mapped: ``meta.json``, then
``train-00000.bin`` ... and ``held-out.bin``, each the raw little-endian ids of one split."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from demo_node.data.arrays import TokenArray
from demo_node.data.errors import DataError

FORMAT = "demo-node-tokens"
VERSION = 1
META = "meta.json"
HELD_OUT = "held-out.bin"
TOKENIZER = "tokenizer.json"
"""A copy of the tokenizer, so that ``load_tokenizer(folder)`` gives the one the shards were made with."""
DTYPES = {"uint16": "<u2", "uint32": "<u4"}


def shard_dtype(vocab_size: int) -> str:
    """"uint16" when every id fits, else "uint32"."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def train_name(index: int) -> str:
    return f"train-{index:05d}.bin"


class _File:
    """One shard being written, with the hash of its bytes."""

    def __init__(self, path: Path):
        self.path, self.tokens, self.hash = path, 0, hashlib.sha256()
        self.f = path.open("wb")

    def write(self, data: bytes, tokens: int) -> None:
        self.f.write(data)
        self.hash.update(data)
        self.tokens += tokens

    def close(self) -> dict[str, Any]:
        self.f.close()
        return {"file": self.path.name, "tokens": self.tokens, "sha256": self.hash.hexdigest()}


class ShardWriter:
    """Writes the two splits' tokens, in order, into a new folder; ``finish`` writes meta.json last, so a folder
    without it is one that was never finished."""

    def __init__(self, folder: str | Path, dtype: str, shard_tokens: int):
        self.folder = Path(folder)
        if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
            raise DataError(f"{self.folder}: exists and is not an empty folder (prepare writes a new one)")
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens must be at least 1, not {shard_tokens}")
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype, self.shard_tokens = dtype, shard_tokens
        self.train: list[dict[str, Any]] = []
        self.current: _File | None = None
        self.held_out = _File(self.folder / HELD_OUT)
        # the content hashes of the two splits, as TokenArray.digest computes them (uint32, whatever the dtype)
        self.digests = {False: hashlib.sha256(), True: hashlib.sha256()}

    def add(self, held_out: bool, tokens: np.ndarray) -> None:
        self.digests[held_out].update(tokens.astype("<u4").tobytes())
        data = tokens.astype(DTYPES[self.dtype])
        if held_out:
            self.held_out.write(data.tobytes(), len(data))
            return
        while len(data):
            if self.current is None:
                self.current = _File(self.folder / train_name(len(self.train)))
            room = self.shard_tokens - self.current.tokens
            self.current.write(data[:room].tobytes(), len(data[:room]))
            data = data[room:]
            if self.current.tokens == self.shard_tokens:
                self.train.append(self.current.close())
                self.current = None

    def abort(self) -> None:
        """Removes what was written (the folder was empty or new): a half corpus is worse than none."""
        files = [self.held_out, *([self.current] if self.current else [])]
        for f in files:
            f.f.close()
        for path in [f.path for f in files] + [self.folder / s["file"] for s in self.train]:
            path.unlink(missing_ok=True)
        if self.created:
            self.folder.rmdir()

    def digest(self, held_out: bool) -> str:
        """The split's content hash so far, as TokenArray.digest gives it."""
        return self.digests[held_out].hexdigest()

    def tokens(self, held_out: bool) -> int:
        """The split's tokens written so far."""
        if held_out:
            return self.held_out.tokens
        return sum(s["tokens"] for s in self.train) + (self.current.tokens if self.current else 0)

    def finish(self, **meta: Any) -> dict[str, Any]:
        """Closes the files and writes meta.json with ``meta`` (tokenizer, fingerprint, ...) added; returns it."""
        if self.current is not None:
            self.train.append(self.current.close())
            self.current = None
        held = self.held_out.close()
        out = {"format": FORMAT, "version": VERSION, "dtype": self.dtype,
               "train_tokens": sum(s["tokens"] for s in self.train), "held_out_tokens": held["tokens"],
               "train": self.train, "held_out": held, **meta}
        tmp = self.folder / (META + ".tmp")
        tmp.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.folder / META)
        return out


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The checked meta.json of a shard folder."""
    path = Path(folder) / META
    if not path.is_file():
        raise DataError(f"{path}: missing, so {folder} is not a finished folder of token shards (was `demo-node data "
                        f"prepare` interrupted?)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not the meta.json of a folder of token shards (no \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: shard format version {meta.get('version')}; this program reads version {VERSION}")
    if meta.get("dtype") not in DTYPES:
        raise DataError(f"{path}: dtype {meta.get('dtype')!r}, not one of {sorted(DTYPES)}")
    for key in ("train", "held_out", "tokenizer", "fingerprint"):
        if key not in meta:
            raise DataError(f"{path}: no {key!r}")
    return meta


def _open(folder: Path, entry: dict[str, Any], dtype: str) -> np.ndarray:
    path = folder / entry["file"]
    want = entry["tokens"] * np.dtype(DTYPES[dtype]).itemsize
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: listed in meta.json but cannot be read ({e.strerror or e})") from None
    if size != want:
        raise DataError(f"{path}: {size} bytes, but meta.json says {entry['tokens']} {dtype} tokens ({want} bytes)")
    if entry["tokens"] == 0:
        return np.zeros(0, dtype=DTYPES[dtype])  # an empty file cannot be mapped
    return np.memmap(path, dtype=DTYPES[dtype], mode="r", shape=(entry["tokens"],))


def read_shards(folder: str | Path) -> tuple[dict[str, Any], TokenArray, TokenArray]:
    """(meta, train, held_out) of a shard folder, the files memory-mapped after their sizes are checked."""
    folder = Path(folder)
    meta = read_meta(folder)
    train = TokenArray([_open(folder, e, meta["dtype"]) for e in meta["train"]])
    held_out = TokenArray([_open(folder, meta["held_out"], meta["dtype"])])
    return meta, train, held_out


def verify_shards(folder: str | Path) -> None:
    """Checks every shard's bytes against its sha256 in meta.json (reads them all); raises naming the first bad one."""
    folder = Path(folder)
    meta = read_meta(folder)
    for entry in [*meta["train"], meta["held_out"]]:
        path = folder / entry["file"]
        h = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
        if h.hexdigest() != entry["sha256"]:
            raise DataError(f"{path}: its content is not what meta.json says (sha256 {h.hexdigest()}, expected "
                            f"{entry['sha256']}): the folder is damaged; prepare it again")
