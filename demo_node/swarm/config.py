"""How this node takes part in rounds (its own choices, not the run's), and the exchange modes (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from demo_node.options import one_of, positive, within

RELAY, SIGN, SPARSE, AUTO = "relay", "sign", "sparse", "auto"
EXCHANGES = (AUTO, RELAY, SIGN, SPARSE)
"""relay: owners forward the included payloads (cheap for small rounds; bytes grow with the round); sign: owners send
one bit per parameter of their shard (bytes independent of the round's size); sparse: owners send their shard's
aggregate cut to the run's top-k per block (about one payload in all, independent of the round's size); auto: relay
or sign, the cheaper one per round."""


@dataclass(kw_only=True)
class RoundConfig:
    SECTION = "round"

    deadline: float = field(default=10.0, metadata=positive())
    """Seconds an owner waits for contributions after the round's first one."""
    adaptive_deadline: bool = False
    """Shrink the deadline towards 3x the recent arrival spread (never below 1 s or above the deadline)."""
    exchange: str = field(default=AUTO, metadata=one_of(EXCHANGES))
    """How owners return a shard's update: relay (the payloads), sign (the update's sign bits), sparse (the aggregate's
    top-k per block) or auto (relay or sign, the cheaper one for the round's size)."""
    overlap: bool = False
    """Compute the next round while this round's exchange is in flight (its update is applied one round later)."""


@dataclass(kw_only=True)
class DefenseConfig:
    """What a run does against hostile peers; part of the run's definition (every node must do the same)."""

    SECTION = "defense"

    max_sample_weight: float = field(default=4096.0, metadata=positive())
    """The most samples one contribution may weigh in an aggregate (robust aggregation also caps it at 4x the
    round's lower median weight): set it to the largest batch an honest node trains on per round."""
    robust_aggregation: bool = True
    """Bound every contribution's weight and clip its values to the round's lower median norm before aggregating, and
    reject what would still not be finite (see demo_node/core/robust.py)."""
    verify_shards: bool = True
    """With three members or more, a second owner signs a verdict on every shard's result (one per shard, so an owner
    cannot have two results applied), and in sign exchange recomputes its update; a node applies an update once it is
    verified (or no member heard a verdict)."""
    audit_fraction: float = field(default=1.0, metadata=within(0.0, 1.0, low_open=True))
    """The fraction of rounds a verifier audits, drawn by each verifier in secret once it holds the owner's result.
    At 1 every contributor also sends the verifier its payload; below 1 it keeps it and serves it when the verifier
    audits, so verification costs this fraction of a second copy of the payload, and a lying owner is caught at each
    lie with this probability (an unaudited update is applied, and counted as unaudited)."""
