"""Why a payload or a request is refused: the proto enum ``Refusal`` as short names (metrics labels), and the one
error a payload decoder raises."""

from __future__ import annotations

from demo_node.wire.proto import demo_node_swarm_pb2 as spb

_PREFIX = "REFUSAL_"
REFUSALS: tuple[str, ...] = tuple(n[len(_PREFIX):].lower() for n in spb.Refusal.keys() if n != "REFUSAL_NONE")
"""Every refusal reason, by its short name (``REFUSAL_ROUND_CLOSED`` -> ``round_closed``); see the proto's comments."""
REASONS: tuple[str, ...] = REFUSALS[: REFUSALS.index("coverage") + 1]
"""The reasons a payload decoder gives (the refusals up to ``coverage``; the rest are the round protocol's)."""


def refusal_code(reason: str) -> int:
    """The proto value of a reason's short name."""
    return spb.Refusal.Value(_PREFIX + reason.upper())


def refusal_name(code: int) -> str:
    """The short name of a proto value ("" for REFUSAL_NONE, "unknown" for a value this version does not know)."""
    if code == spb.REFUSAL_NONE:
        return ""
    try:
        return spb.Refusal.Name(code)[len(_PREFIX):].lower()
    except ValueError:
        return "unknown"


class PayloadError(ValueError):
    """A payload that must be dropped; ``reason`` is one of :data:`REFUSALS` (the decoder's are :data:`REASONS`)."""

    def __init__(self, reason: str, detail: str):
        assert reason in REFUSALS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
