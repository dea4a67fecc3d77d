"""Who takes part in a round, who owns which blocks, and how shard results travel back.

The plan of round r is a pure function of the round's members (derived by every node from the results of round
r - 1, which are the same bytes everywhere), so every node computes the same plan without talking to anyone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from demo_node.core.layout import Layout
from demo_node.swarm.config import AUTO, RELAY, SIGN, SPARSE


@dataclass(frozen=True, order=True)
class Member:
    peer: bytes
    client: bool = False
    """Cannot accept connections: contributes, owns nothing."""


@dataclass(frozen=True)
class RoundPlan:
    round: int
    members: tuple[Member, ...]
    """Ascending by peer id."""
    owners: tuple[bytes, ...]
    """Members that own a shard, ascending."""
    ranges: dict[bytes, dict[int, tuple[int, int]]]
    """Owner -> bucket -> [start, stop) blocks it owns."""
    mode: str
    """How owners return results: relay (forward payloads), sign (send update signs) or sparse (send the cut
    aggregate)."""
    verifiers: dict[bytes, bytes] = field(default_factory=dict)
    """Owner -> the owner that verifies its shard (three members or more, two owners or more); empty otherwise."""

    @cached_property
    def fingerprint(self) -> bytes:
        """Short hash of what every member must agree on: members, their roles, the exchange mode, verification."""
        h = hashlib.blake2b(digest_size=8)
        for m in self.members:
            h.update(m.peer + (b"c" if m.client else b"s"))
        h.update(self.mode.encode() + self.round.to_bytes(8, "little") + (b"v" if self.verifiers else b"-"))
        return h.digest()

    def shares(self, peer: bytes) -> tuple[bytes, ...]:
        """The owners that pass on ``peer``'s statement of this round: two (one when there is one owner), so that no
        single owner can hide a peer by leaving its statement out. An owner's own statement goes to the next owners,
        so that an owner's death never hides its own absence; other peers are spread by a hash of their id."""
        n = len(self.owners)
        if peer in self._owner_index:
            first = (self._owner_index[peer] + 1) % n
        else:
            first = int.from_bytes(hashlib.sha256(peer).digest()[:8], "little") % n
        return tuple(dict.fromkeys(self.owners[(first + i) % n] for i in range(min(2, n))))

    @cached_property
    def _owner_index(self) -> dict[bytes, int]:
        return {o: i for i, o in enumerate(self.owners)}

    def verified_by(self, verifier: bytes) -> list[bytes]:
        """The owners whose shards ``verifier`` verifies."""
        return [o for o, v in self.verifiers.items() if v == verifier]

    @property
    def peers(self) -> set[bytes]:
        return {m.peer for m in self.members}

    @cached_property
    def order(self) -> tuple[bytes, ...]:
        """The members' peer ids, ascending: the order of a shard result's inclusion bits and of aggregation."""
        return tuple(sorted(self.peers))

    def owner_ranges(self, owner: bytes) -> dict[int, tuple[int, int]]:
        return self.ranges[owner]


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """[0, n) cut into ``parts`` contiguous runs whose lengths differ by at most one."""
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def choose_mode(n_members: int, payload_bytes: int, sign_bytes: int, setting: str) -> str:
    """Per node and round, relaying costs about (N - 1) payloads down; signs cost about one payload plus one bit
    per parameter (sign_bytes). Signs win once N - 1 > 1 + sign_bytes / payload_bytes, roughly. Sparse exchange
    (about one payload each way whatever N) is never auto's choice: its cut ended 3.4% behind sign exchange's held-out
    loss at 435 steps (docs/scale-model.md)."""
    if setting in (RELAY, SIGN, SPARSE):
        return setting
    n = n_members
    relay_cost = (n - 1) * payload_bytes
    sign_cost = (n - 1) * (payload_bytes + sign_bytes) / max(n, 1)
    return SIGN if sign_cost < relay_cost else RELAY


def make_plan(round: int, members: list[Member], layout: Layout, payload_bytes: int, setting: str = AUTO,
              verify: bool = True) -> RoundPlan:
    """The plan of a round. ``verify``: with three members or more, each owner's shard gets another owner as its
    verifier, the next, the next but one, ... as rounds go on (with two owners, always the other): an owner and a
    verifier that collude meet only in some rounds. In sign and sparse exchange a verifier recomputes the update; in
    relay exchange (every node aggregates the relayed payloads itself) it only vouches for one body per shard."""
    members = sorted(set(members))
    owners = tuple(m.peer for m in members if not m.client)
    if not owners:
        raise ValueError(f"round {round} has no member that accepts connections: nobody can own a shard")
    ranges: dict[bytes, dict[int, tuple[int, int]]] = {o: {} for o in owners}
    for spec in layout.buckets:
        for owner, run in zip(owners, split(spec.num_blocks, len(owners))):
            if run[1] > run[0]:
                ranges[owner][spec.index] = run
    sign_bytes = (layout.num_params + 7) // 8
    mode = choose_mode(len(members), payload_bytes, sign_bytes, setting)
    verifiers = {}
    if verify and len(members) >= 3 and len(owners) >= 2:
        shift = 1 + round % (len(owners) - 1)
        verifiers = {o: owners[(i + shift) % len(owners)] for i, o in enumerate(owners)}
    return RoundPlan(round, tuple(members), owners, ranges, mode, verifiers)
