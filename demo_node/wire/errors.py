"""The one error a payload decoder raises, with a short machine-readable reason (a metrics label)."""

from __future__ import annotations

REASONS = (
    "too_large",  # more bytes than a valid payload for this run can have
    "malformed",  # not a protobuf message of the expected type
    "version",  # a wire format version this node does not know
    "run_id",  # a payload of another run
    "round",  # a payload of another round
    "sender",  # missing or oversized sender id
    "samples",  # sample weight not finite and > 0
    "tensor",  # an entry for a tensor the run does not have
    "block_range",  # an entry whose blocks fall outside its tensor
    "k",  # coefficients per block outside [1, k], or varying inside a bucket
    "index_format",  # unknown index format, or one that cannot hold k of the block
    "index_length",  # index bytes of the wrong length
    "index_range",  # an index beyond the block
    "index_order",  # indices not strictly ascending inside a block (repeats included)
    "index_count",  # a bitmask block with a number of set bits other than k
    "value_format",  # unknown value format, or several formats in one payload
    "value_length",  # value or scale bytes of the wrong length
    "value_not_finite",  # a NaN or infinite value or scale, or a negative scale
    "coverage",  # entries that overlap, or leave out blocks the receiver expects, or cover others
)


class PayloadError(ValueError):
    """A payload that must be dropped; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
