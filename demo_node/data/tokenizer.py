"""A run's tokenizer: raw bytes (one token per byte) or a byte-level BPE of Hugging Face ``tokenizers``, with a hash
that names it by content."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"
"""The special token that ends every document of a BPE's token stream (id 0 in a BPE that ``train_bpe`` made)."""
BYTES_SEPARATOR = b"\n\n"
"""What ends every document of a byte-level token stream (as the byte corpus always did)."""


class Tokenizer:
    """Text to token ids and back: ``kind`` "bytes" (id = byte value, no file) or "bpe" (a ``tokenizers`` one)."""

    def __init__(self, kind: str, hf: tokenizers.Tokenizer | None = None):
        if kind not in ("bytes", "bpe") or (kind == "bpe") != (hf is not None):
            raise ValueError(f"a Tokenizer is kind 'bytes' without a tokenizers object or 'bpe' with one, not {kind!r}")
        self.kind = kind
        self._hf = hf
        self._canonical = None if hf is None else _canonical(hf.to_str())

    @property
    def vocab_size(self) -> int:
        return 256 if self._hf is None else self._hf.get_vocab_size(with_added_tokens=True)

    @property
    def eos_id(self) -> int | None:
        """The id of ``<|endoftext|>`` (None for bytes, or for a loaded BPE that has no such token)."""
        return None if self._hf is None else self._hf.token_to_id(EOS)

    @property
    def separator(self) -> list[int]:
        """The ids that end each document in a token stream: the eos token, or "\\n\\n" where there is none."""
        if self.eos_id is not None:
            return [self.eos_id]
        return self.encode(BYTES_SEPARATOR.decode())

    @property
    def sha256(self) -> str:
        """Hex sha256 of the definition: of "bytes", or of the tokenizer's JSON with sorted keys."""
        text = "bytes" if self._canonical is None else self._canonical
        return hashlib.sha256(text.encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        if self._hf is None:
            return list(text.encode("utf-8"))
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many texts at once (the Rust encoder, on all cores, for a BPE)."""
        if self._hf is None:
            return [list(t.encode("utf-8")) for t in texts]
        return [e.ids for e in self._hf.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        if self._hf is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return self._hf.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        """A ``tokenizers`` JSON of this tokenizer (for bytes: one that maps byte b to id b)."""
        return _bytes_json() if self._hf is None else self._canonical

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """The tokenizer of a ``tokenizers`` JSON; the JSON of ``to_json`` of bytes gives the bytes tokenizer back."""
        hf = tokenizers.Tokenizer.from_str(text)
        if _canonical(hf.to_str()) == _bytes_json():
            return byte_tokenizer()
        return cls("bpe", hf)

    def __repr__(self) -> str:
        return f"Tokenizer({self.kind}, vocab_size={self.vocab_size}, sha256={self.sha256[:12]})"


def byte_tokenizer() -> Tokenizer:
    return Tokenizer("bytes")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a ``tokenizer.json`` file (or of a folder that holds one, as ``prepare`` writes)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"tokenizer {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"tokenizer {p}: cannot read it ({e})") from None
    try:
        return Tokenizer.from_json(text)
    except Exception as e:  # noqa: BLE001 (tokenizers raises a bare Exception for a JSON it cannot use)
        raise ValueError(f"tokenizer {p}: not a Hugging Face tokenizer.json ({e})") from None


def train_bpe(documents: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (fewer if the text has too few pairs seen twice) trained on
    ``documents``; the same documents give the same tokenizer in any process, with any number of threads."""
    if vocab_size < 257:
        raise ValueError(f"a BPE vocabulary holds the 256 bytes and {EOS}: vocab_size {vocab_size} is under 257")
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    # the whole byte alphabet, so that any text encodes without an unknown token; the special token comes first (id
    # 0). The trainer breaks ties between pairs of equal count by their ids, which is what makes it deterministic.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(documents, trainer)
    return Tokenizer("bpe", hf)


def _canonical(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _byte_chars() -> list[str]:
    """GPT-2's printable stand-in for each byte, as the ByteLevel pre-tokenizer writes them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


@functools.cache
def _bytes_json() -> str:
    vocab = {c: b for b, c in enumerate(_byte_chars())}
    hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.decoder = decoders.ByteLevel()
    # the map must be the byte values themselves, or a model trained on bytes would read the wrong ids
    probe = "ascii, \t\n\r\x00\x7f, é, ß, 漢字, 🙂".encode()
    got = hf.encode(probe.decode(), add_special_tokens=False).ids
    if got != list(probe):
        raise RuntimeError(f"tokenizers {tokenizers.__version__} does not map bytes to their values: {got[:16]}")
    return _canonical(hf.to_str())
