"""Who may own shards, and who stays a member when nobody can tell: every node keeps these books from what it
learns alike in every round (the shard results, the verdicts, the statements they pass on), so every node plans the
next round the same way without asking anyone.

- **Faults.** A round in which an owner's shard could not be applied because of that owner is a fault: nobody got
  its result (``silent``: dead, hung, or holding the streams), its verifier found that it withheld an input its
  result names (``withheld``), or its result left out most of the contributions that the other owners' results show
  were on time (``omitted``). Faults in ``FAULT_STREAK`` rounds in a row: an owner that was only silent is benched
  (owns nothing for a while, twice as long each time, then owns again: a hung GPU recovers); one whose streak held
  withholding or omission only is demoted for the rest of the run (repeated proof of cheating, as the round's signed
  results show it to every node).
- **Demotion by accusation.** A peer accused, with evidence each accuser checked itself, by more than half of the
  round's other members (two at least) is demoted (see :mod:`demo_node.swarm.evidence`).
- **Never the last owner.** No rule benches or demotes the last member that could still own a shard: a swarm with no
  owner left could apply nothing, so the books keep one (then accusations and faults simply wait).
- **Unknown members.** A member whose statement is missing while an owner that should have passed it on gave no
  result may be alive (its statement went down with that owner): it stays, for ``UNKNOWN_ROUNDS`` rounds in a row at
  most, then it is dropped (a dead peer in a two-node swarm, whose own shard is the other share of its statement).

The books travel with a state transfer (:meth:`to_proto`), so a joiner plans as the members do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from demo_node.swarm.plan import Member
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

SILENT, WITHHELD, OMITTED = "silent", "withheld", "omitted"
FAULTS = (SILENT, WITHHELD, OMITTED)
PROVEN = frozenset({WITHHELD, OMITTED})
"""Fault kinds that only cheating explains (a silent owner may be a hung machine)."""
FAULT_STREAK = 2
"""Rounds in a row with a fault before an owner is benched or demoted (one is a glitch)."""
BENCH_ROUNDS = 16
"""Rounds a first bench lasts; each further one lasts twice as long as the one before..."""
BENCH_MAX = 1024
"""...up to this many."""
UNKNOWN_ROUNDS = 2
"""Rounds in a row a member may stay while nobody can tell whether it is there."""


@dataclass
class Standing:
    demoted: set[bytes] = field(default_factory=set)
    """Never own a shard again (they still contribute: robust aggregation bounds what they send)."""
    benched: dict[bytes, int] = field(default_factory=dict)
    """Peer -> the first round it owns again."""
    offenses: dict[bytes, int] = field(default_factory=dict)
    """Peer -> how many times it was benched (each bench lasts twice the one before)."""
    streaks: dict[bytes, list[str]] = field(default_factory=dict)
    """Owner -> the kinds of its faults in the rounds up to now, in a row."""
    unknown: dict[bytes, int] = field(default_factory=dict)
    """Member -> rounds in a row its presence was unknown."""

    def copy(self) -> "Standing":
        return copy.deepcopy(self)

    def owns(self, peer: bytes, round: int) -> bool:
        """Whether ``peer`` may own a shard in ``round`` (client mode aside)."""
        return peer not in self.demoted and self.benched.get(peer, 0) <= round

    def roles(self, members: list[Member], round: int) -> list[Member]:
        """The round's members with those that own nothing marked as clients; benched ones own after all when
        nobody else could, and then members that said they cannot own (a round needs an owner: one that nobody
        reaches loses its shard's update that round and is benched, which beats a swarm with no round at all)."""
        for ruled in ([Member(m.peer, m.client or not self.owns(m.peer, round)) for m in members],
                      [Member(m.peer, m.client or m.peer in self.demoted) for m in members],
                      [Member(m.peer, m.peer in self.demoted) for m in members]):
            if any(not m.client for m in ruled):
                return ruled
        return list(members)

    def _capable(self, members: list[Member], round: int, without: bytes) -> bool:
        """Whether a member other than ``without`` could still own a shard from ``round`` on."""
        return any(not m.client and m.peer != without and self.owns(m.peer, round) for m in members)

    # -- what a round taught ----------------------------------------------------------------------------------
    def record_faults(self, round: int, owners: tuple[bytes, ...], faults: dict[bytes, str],
                      members: list[Member]) -> dict[bytes, str]:
        """After round ``round``: ``faults`` maps each owner whose shard failed by its fault to the fault's kind
        (the other owners of the round were fine). Returns the owners benched or demoted now ("benched"/"demoted")."""
        changed: dict[bytes, str] = {}
        for owner in owners:
            kind = faults.get(owner)
            if kind is None:
                self.streaks.pop(owner, None)
                continue
            streak = self.streaks.setdefault(owner, [])
            streak.append(kind)
            if len(streak) < FAULT_STREAK or not self._capable(members, round + 1, owner):
                continue
            del self.streaks[owner]
            if PROVEN.issuperset(streak):
                self.demoted.add(owner)
                changed[owner] = "demoted"
            else:
                n = self.offenses.get(owner, 0)
                self.benched[owner] = round + 1 + min(BENCH_MAX, BENCH_ROUNDS << n)
                self.offenses[owner] = n + 1
                changed[owner] = "benched"
        for peer in [p for p, until in self.benched.items() if until <= round + 1]:
            del self.benched[peer]  # owns again from the next round
        return changed

    def demote_accused(self, accusers: dict[bytes, set[bytes]], members: list[Member], round: int) -> set[bytes]:
        """Demote every member accused by more than half of the round's other members (two at least), in peer-id
        order while another member could still own; the newly demoted."""
        peers = {m.peer for m in members}
        new = set()
        for accused in sorted(accusers):
            if accused in self.demoted or accused not in peers:
                continue
            who = (accusers[accused] & peers) - {accused}
            if len(who) >= 2 and 2 * len(who) > len(peers) - 1 and self._capable(members, round + 1, accused):
                self.demoted.add(accused)
                new.add(accused)
        return new

    def still_unknown(self, peer: bytes) -> bool:
        """``peer``'s presence was unknown this round: whether it may stay (it is counted)."""
        n = self.unknown.get(peer, 0) + 1
        self.unknown[peer] = n
        return n < UNKNOWN_ROUNDS

    def known(self, peer: bytes) -> None:
        self.unknown.pop(peer, None)

    def forget(self, keep: set[bytes]) -> None:
        """Drop the streaks of peers that are no longer members (their standing otherwise lasts)."""
        for d in (self.streaks, self.unknown):
            for p in [p for p in d if p not in keep]:
                del d[p]

    # -- in a state transfer ------------------------------------------------------------------------------------
    def to_proto(self) -> list[spb.PeerStanding]:
        peers = set(self.demoted) | set(self.benched) | set(self.offenses) | set(self.streaks) | set(self.unknown)
        return [spb.PeerStanding(peer=p, demoted=p in self.demoted, benched_until=self.benched.get(p, 0),
                                 offenses=self.offenses.get(p, 0), faults=self.streaks.get(p, []),
                                 unknown=self.unknown.get(p, 0)) for p in sorted(peers)]

    @classmethod
    def from_proto(cls, rows, demoted: list[bytes] = ()) -> "Standing":
        """The books a state server sent (its own: the downloader checks the state's digest, not these; a server that
        lies in them makes the joiner plan otherwise than the members, which they refuse, and it downloads again)."""
        s = cls(demoted=set(demoted))
        for row in list(rows)[:4096]:
            p = bytes(row.peer)[:128]
            if row.demoted:
                s.demoted.add(p)
            if row.benched_until:
                s.benched[p] = int(row.benched_until)
            if row.offenses:
                s.offenses[p] = min(int(row.offenses), 64)
            kinds = [k for k in row.faults if k in FAULTS][:FAULT_STREAK]
            if kinds:
                s.streaks[p] = kinds
            if row.unknown:
                s.unknown[p] = min(int(row.unknown), UNKNOWN_ROUNDS)
        return s
