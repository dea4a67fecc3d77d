"""A 1-D sequence of token ids kept as one or more arrays end to end (in memory, or a memmap per shard file), read
by slices so that a corpus larger than memory is never copied whole."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

HASH_CHUNK = 1 << 22
"""Tokens hashed at a time (16 MB as uint32)."""


class TokenArray:
    """Token ids ``parts[0]`` then ``parts[1]`` ...; ``a[i:j]`` is a numpy array (a view when in one part)."""

    def __init__(self, parts: Sequence[np.ndarray]):
        self.parts = [p for p in parts if len(p)] or [np.zeros(0, dtype=parts[0].dtype if parts else np.uint16)]
        if any(p.ndim != 1 for p in self.parts):
            raise ValueError("a TokenArray is made of 1-D arrays")
        # where each part starts in the whole: starts[k] is the index of parts[k][0]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, key: slice | int) -> np.ndarray | int:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("a TokenArray is sliced with step 1")
            return self.read(start, max(0, stop - start))
        i = key + len(self) if key < 0 else key
        if not 0 <= i < len(self):
            raise IndexError(f"token {key} of {len(self)}")
        k = bisect.bisect_right(self.starts, i) - 1
        return int(self.parts[k][i - self.starts[k]])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``start .. start+length`` (a view if they lie in one part, else a copy of just them)."""
        k = bisect.bisect_right(self.starts, start) - 1
        k = min(k, len(self.parts) - 1)
        offset = start - self.starts[k]
        if offset + length <= len(self.parts[k]):
            return self.parts[k][offset : offset + length]
        pieces, left = [], length
        while left > 0 and k < len(self.parts):
            piece = self.parts[k][offset : offset + left]
            pieces.append(piece)
            left -= len(piece)
            k, offset = k + 1, 0
        return np.concatenate(pieces)

    def chunks(self, size: int = HASH_CHUNK) -> Iterator[np.ndarray]:
        """The tokens in order, at most ``size`` at a time, never all at once."""
        for part in self.parts:
            for i in range(0, len(part), size):
                yield part[i : i + size]

    def numpy(self) -> np.ndarray:
        """All the tokens in one array in memory (a copy when there are several parts)."""
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)

    def digest(self) -> str:
        """Hex sha256 of the ids as little-endian uint32, whatever the dtype they are kept in."""
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk.astype("<u4").tobytes())
        return h.hexdigest()
