"""How this node takes part in rounds (its own choices, not the run's), and the exchange modes (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from demo_node.options import one_of, positive

RELAY, SIGN, AUTO = "relay", "sign", "auto"
EXCHANGES = (AUTO, RELAY, SIGN)
"""relay: owners forward the included payloads (cheap for small rounds; bytes grow with the round); sign: owners send
one bit per parameter of their shard (bytes independent of the round's size); auto: the cheaper one, per round."""


@dataclass(kw_only=True)
class RoundConfig:
    SECTION = "round"

    deadline: float = field(default=10.0, metadata=positive())
    """Seconds an owner waits for contributions after the round's first one."""
    adaptive_deadline: bool = False
    """Shrink the deadline towards 3x the recent arrival spread (never below 1 s or above the deadline)."""
    exchange: str = field(default=AUTO, metadata=one_of(EXCHANGES))
    """How owners return a shard's update: relay (the payloads), sign (the update's sign bits) or auto (the cheaper
    one for the round's size)."""
    overlap: bool = False
    """Compute the next round while this round's exchange is in flight (its update is applied one round later)."""
