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


# -- Elias-Fano: k ascending indices in [0, size) per block, in about 2 + log2(size / k) bits each ----------------------
def elias_fano_low_bits(k: int, size: int) -> int:
    """The low bits written per index: floor(log2(size / k)), at least 1."""
    return max(1, (size // max(k, 1)).bit_length() - 1)


def elias_fano_high_len(k: int, size: int) -> int:
    """Bits of one block's high part: one set bit per index, one clear bit per step of its high value."""
    return k + ((size - 1) >> elias_fano_low_bits(k, size)) + 1


def elias_fano_len(blocks: int, k: int, size: int) -> int:
    """Bytes of ``blocks`` blocks: the packed low bits, then the high parts (each part byte-aligned as a whole)."""
    return packed_len(blocks * k, elias_fano_low_bits(k, size)) + packed_len(blocks * elias_fano_high_len(k, size), 1)


def pack_elias_fano(indices: np.ndarray, size: int) -> bytes:
    """(blocks, k) strictly ascending indices in [0, size), block after block."""
    blocks, k = indices.shape
    low_bits = elias_fano_low_bits(k, size)
    high = (indices >> low_bits) + np.arange(k)  # the i-th index's bit in its block's high part
    flags = np.zeros((blocks, elias_fano_high_len(k, size)), dtype=bool)
    np.put_along_axis(flags, high, True, axis=1)
    return pack_uints(indices & ((1 << low_bits) - 1), low_bits) + pack_flags(flags)


def unpack_elias_fano(data: bytes, blocks: int, k: int, size: int) -> np.ndarray | None:
    """Inverse of :func:`pack_elias_fano` for ``data`` of exactly ``elias_fano_len`` bytes: (blocks, k) indices,
    or None where a block's high part does not set exactly k bits. The caller checks range and order (a hostile
    encoding can name an index >= size, or a low part that breaks the order)."""
    low_bits = elias_fano_low_bits(k, size)
    split = packed_len(blocks * k, low_bits)
    low = unpack_uints(data[:split], low_bits, blocks * k).reshape(blocks, k)
    flags = unpack_flags(data[split:], blocks * elias_fano_high_len(k, size)).reshape(blocks, -1)
    if (flags.sum(axis=1) != k).any():
        return None
    high = np.nonzero(flags)[1].reshape(blocks, k) - np.arange(k)
    return (high << low_bits) | low
