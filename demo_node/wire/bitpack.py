"""Little-endian bit packing of small unsigned integers and of bit flags (numpy, vectorised)."""

from __future__ import annotations

import numpy as np


def bits_for(size: int) -> int:
    """Bits needed for an index in [0, size): 12 for a 4096-coefficient block."""
    return max(0, (size - 1).bit_length())


def packed_len(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def pack_uints(values: np.ndarray, bits: int) -> bytes:
    """Each value (< 2**bits, bits <= 16) as ``bits`` bits, least significant first, value after value."""
    if not 0 <= bits <= 16:
        raise ValueError(f"bits must be in [0, 16], got {bits}")
    if bits == 0 or values.size == 0:
        return b""
    le16 = values.astype("<u2").reshape(-1, 1).view(np.uint8)  # (n, 2) bytes, low byte first
    allbits = np.unpackbits(le16, axis=1, bitorder="little")  # (n, 16)
    return np.packbits(allbits[:, :bits].reshape(-1), bitorder="little").tobytes()


def unpack_uints(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_uints`; ``data`` must be exactly ``packed_len(count, bits)`` bytes."""
    if bits == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    allbits = np.unpackbits(raw, count=count * bits, bitorder="little").reshape(count, bits)
    padded = np.zeros((count, 16), dtype=np.uint8)
    padded[:, :bits] = allbits
    return np.packbits(padded, axis=1, bitorder="little").view("<u2").reshape(count).astype(np.int64)


def pack_flags(flags: np.ndarray) -> bytes:
    """Booleans as bits, least significant bit first."""
    return np.packbits(flags.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_flags(data: bytes, count: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count, bitorder="little").astype(bool)
