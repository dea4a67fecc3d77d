"""Who is in the next round, and which digest the swarm holds: both only from statements signed by the peers they
are about, as the round's shard results pass them on.

Every node gets the same shard results (or none of one, alike), so every node derives the same next members:
- a member whose statement of this round is in a result is present, and stays unless it leaves;
- a member whose statement is in no result that everyone got, while one of the two owners that pass it on gave no
  result to anyone (it died), stays, unknown this round, unless it was unknown the round before too (then it is
  dropped: in a two-node swarm a dead peer's own shard is the other share of its statement);
- a member whose statement is missing from both results that pass it on was absent: it is dropped (one lying owner
  cannot hide a peer: the other passes its statement on);
- a non-member whose statement asks to join becomes a member.

Who of them may own shards is the business of :mod:`demo_node.swarm.standing`; the accusations it counts come from
the same statements (:func:`accusers_of`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from demo_node.swarm.plan import Member, RoundPlan
from demo_node.swarm.signing import BadSigned, open_statement
from demo_node.swarm.standing import Standing
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)


@dataclass
class Statements:
    """The verified statements of one round, one per peer."""

    by_peer: dict[bytes, spb.Statement] = field(default_factory=dict)
    signed: dict[bytes, spb.Signed] = field(default_factory=dict)
    conflicting: set[bytes] = field(default_factory=set)
    """Peers that signed two different statements for this round: neither counts."""
    rejected: int = 0
    """Statements that did not check out (forged, or of another run or round): dropped."""

    def add(self, signed: spb.Signed, statement: spb.Statement) -> None:
        peer = statement.peer
        if peer in self.conflicting:
            return
        if peer in self.signed and self.signed[peer].body != signed.body:
            self.conflicting.add(peer)
            del self.by_peer[peer], self.signed[peer]
            return
        self.by_peer[peer] = statement
        self.signed[peer] = signed


def collect(plan: RoundPlan, run_id: str, bodies: dict[bytes, spb.ShardBody | None]) -> tuple[Statements, set[bytes]]:
    """The statements the round's shard results pass on (each owner only its own share of peers), and the owners
    whose results nobody had (their share is unknown)."""
    statements = Statements()
    lost = set()
    for owner, body in bodies.items():
        if body is None:
            lost.add(owner)
            continue
        for signed in body.statements:
            try:
                st = open_statement(signed, run_id=run_id, round=plan.round)
            except BadSigned as exc:
                log.warning("round %d: owner %s passed on a bad statement (%s)", plan.round, owner.hex()[-12:], exc)
                statements.rejected += 1
                continue
            if owner not in plan.shares(st.peer):
                continue  # not this owner's share
            statements.add(signed, st)
    return statements, lost


def accusers_of(plan: RoundPlan, statements: Statements) -> dict[bytes, set[bytes]]:
    """Accused peer -> the round's members whose statements accuse it."""
    members = plan.peers
    accusers: dict[bytes, set[bytes]] = {}
    for peer, st in statements.by_peer.items():
        if peer in members:
            for accused in st.accused:
                accusers.setdefault(accused, set()).add(peer)
    return accusers


def next_members(plan: RoundPlan, members: list[Member], statements: Statements, lost: set[bytes],
                 standing: Standing) -> list[Member]:
    """The members of the round after ``plan``'s, with their own client flags (``members``: this round's, with
    theirs; see the module docstring); ``standing`` keeps which members were unknown how many rounds in a row."""
    if len(lost) == len(plan.owners):
        return sorted(members)  # no shard result at all: nothing learnt, keep the members
    members_now = {m.peer: m for m in members}
    nxt: dict[bytes, bool] = {}
    for m in members:
        st = statements.by_peer.get(m.peer)
        if st is not None:
            standing.known(m.peer)
            if not st.leaving:
                nxt[m.peer] = st.client
        elif any(o in lost for o in plan.shares(m.peer)) and m.peer not in statements.conflicting:
            if standing.still_unknown(m.peer):
                nxt[m.peer] = m.client  # its statement may have gone down with an owner: unknown this round, kept
    for peer, st in statements.by_peer.items():
        if peer not in members_now and st.joining and not st.leaving:
            nxt[peer] = st.client
    return sorted(Member(p, client) for p, client in nxt.items())


def digest_majority(statements: Statements, members: set[bytes], digest_round: int) -> tuple[bytes, list[bytes]] | None:
    """The digest most members signed for ``digest_round`` (ties: the one of the smallest peer id), and the members
    that signed it."""
    same = [st for p, st in statements.by_peer.items()
            if p in members and st.digest_round == digest_round and st.digest]
    if not same:
        return None
    counts = Counter(st.digest for st in same)
    top = max(counts.values())
    best = min((st for st in same if counts[st.digest] == top), key=lambda st: st.peer).digest
    return best, sorted(st.peer for st in same if st.digest == best)


def majority_decides(holders: list[bytes], members: set[bytes], me: bytes = b"",
                     member_since: Mapping[bytes, int] | None = None) -> bool:
    """Whether a majority digest held by ``holders`` may make ``me``, a member that holds another one, download it:
    with more than two members, one holder decides nothing. Such a "majority" is a tie of single reports (the others'
    statements of that round missing or of another round) broken by peer id, which a lone attacker must not win; a
    later round's statements decide. With two members there is no one else to ask: the one that joined later takes
    the other's state (``member_since``: peer -> the first round of its present membership, as this node saw it), so
    a newcomer cannot make a founder download its state by picking a small peer id; where both joined together the
    peer id decides."""
    if len(members) > 2 or len(holders) >= 2:
        return len(holders) >= 2
    since = member_since or {}
    others = [p for p in members if p != me]
    if len(others) == 1 and me in since and others[0] in since and since[me] != since[others[0]]:
        return since[others[0]] < since[me]
    return True
