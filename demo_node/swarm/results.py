"""What a node gets back in a round, checked before anything reads it: a shard's result (its owner's signed body,
and in relay exchange the payloads it relays) and a verifier's verdict."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.included import senders_of
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.shard_update import mode_code
from demo_node.swarm.signing import BadSigned, open_body
from demo_node.wire.errors import PayloadError, refusal_name
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)


@dataclass
class Received:
    """A shard result as this node got it, its owner's signature checked."""

    signed: spb.Signed
    body: spb.ShardBody
    senders: list[bytes]
    """Whose contributions the body includes, in aggregation order (read from its inclusion bits)."""
    relayed: list[spb.Signed] = field(default_factory=list)
    refusal: str = ""


@dataclass
class Verdict:
    signed: spb.Signed
    body: spb.VerdictBody
    audited: bool = True
    """False: the verifier said it drew this round out of its audits (on its own stream; nothing is signed)."""


NOT_AUDITED = Verdict(spb.Signed(), spb.VerdictBody(), audited=False)


def open_result(data: bytes, r: int, owner: bytes, plan: RoundPlan,
                counters: SwarmCounters) -> tuple[Received | None, int]:
    """A shard result's bytes, checked: HAVE, signed by its owner, of this round and the plan's mode; and, when the
    owner refused the round as one it does not know while it is at this round or ahead, its round (else 0)."""
    try:
        res = spb.ShardResult.FromString(data)
    except Exception:
        counters.refused("malformed")
        return None, 0
    if res.status != spb.ShardResult.HAVE:
        reason = refusal_name(res.refusal)
        log.warning("round %d: owner %s answered %s (%s)", r, owner.hex()[-12:],
                    spb.ShardResult.Status.Name(res.status) if res.status in spb.ShardResult.Status.values()
                    else res.status, reason)
        # an owner at this round or ahead that does not know this node's round: this node is out of step (an owner
        # behind it is the one that must catch up)
        ahead = reason in ("plan_mismatch", "round_unknown") and res.current_round >= r
        return None, (max(1, int(res.current_round)) if ahead else 0)
    try:
        body = open_body(res.body, owner, r)
        if body.mode != mode_code(plan.mode):
            log.warning("round %d: owner %s answered in another exchange mode", r, owner.hex()[-12:])
            return None, 0
        senders = senders_of(plan.order, body.included)
    except (BadSigned, PayloadError) as exc:
        log.warning("round %d: the result of %s does not check out (%s)", r, owner.hex()[-12:], exc)
        counters.refused(exc.reason)
        return None, 0
    return Received(res.body, body, senders, list(res.relayed), refusal_name(res.refusal)), 0
