"""What a round teaches once its shards are settled, the same on every node that got the same results: whose update
is skipped because the other owners' results prove it left out contributions, which statements the results pass on,
who is in the next round, and what the books of who may own learn (faults, accusations).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from demo_node.swarm.included import omitting
from demo_node.swarm.membership import Statements, accusers_of, collect, next_members
from demo_node.swarm.outcome import ShardOutcome
from demo_node.swarm.plan import Member, RoundPlan
from demo_node.swarm.standing import OMITTED, SILENT, WITHHELD, Standing

log = logging.getLogger(__name__)


@dataclass
class Lessons:
    statements: Statements
    lost: set[bytes]
    """Owners whose result nobody had (their share of statements is unknown)."""
    next_members: list[Member]
    changed: dict[bytes, str]
    """Owners benched or demoted now."""
    accusers: dict[bytes, set[bytes]]
    """Accused peer -> the members whose statements accuse it (the evidence each holds is checked elsewhere)."""


def hold_to_others(shards: list[ShardOutcome]) -> None:
    """Skip, on every node alike, the updates of owners whose results left out most of the contributions the other
    results show were on time (see demo_node/swarm/included.py): the round's signed results prove it."""
    cheats = omitting({s.owner: s.senders for s in shards if s.body is not None})
    for s in shards:
        if s.owner in cheats and not s.skip:
            log.warning("round %d: the owner %s left out most of the contributions that were on time: its update is "
                        "not applied", s.body.round, s.owner.hex()[-12:])
            s.skip = OMITTED


def faults_of(plan: RoundPlan, shards: list[ShardOutcome], lost: set[bytes]) -> dict[bytes, str]:
    """Owner (or verifier) -> the fault of its part in the round (see demo_node/swarm/standing.py)."""
    faults: dict[bytes, str] = {}
    if len(lost) == len(plan.owners):  # a node that got no result at all learnt nothing of the owners
        return faults
    for s in shards:
        if s.body is None and s.source == "none":
            faults[s.owner] = SILENT
        elif s.skip in (SILENT, WITHHELD, OMITTED):
            faults[s.owner] = s.skip
    for s in shards:  # a verifier whose verdict nobody heard is as silent as an owner whose result is lost
        if s.unheard and s.owner in plan.verifiers:
            faults.setdefault(plan.verifiers[s.owner], SILENT)
    return faults


def learn(plan: RoundPlan, members: list[Member], shards: list[ShardOutcome], run_id: str,
          standing: Standing) -> Lessons:
    """Everything the settled ``shards`` of ``plan``'s round teach (``members``: the round's, with their own client
    flags); ``standing`` learns its part."""
    hold_to_others(shards)
    # a result that reached nobody but this node passes on nothing here either (its owner included)
    statements, lost = collect(plan, run_id, {s.owner: s.body if s.skip != SILENT else None for s in shards})
    nxt = next_members(plan, members, statements, lost, standing)
    faults = faults_of(plan, shards, lost)
    changed = standing.record_faults(plan.round, plan.owners, faults, nxt)
    accusers = accusers_of(plan, statements)
    for p in standing.demote_accused(accusers, nxt, plan.round):
        changed[p] = "demoted"
    standing.forget({m.peer for m in nxt} | set(plan.peers))
    for peer, what in changed.items():
        why = f"its shard failed in rounds in a row, now {faults[peer]}" if peer in faults else \
            "accused with evidence by most members"
        log.warning("round %d: %s is %s (%s)", plan.round, peer.hex()[-12:], what, why)
    return Lessons(statements, lost, nxt, changed, accusers)
