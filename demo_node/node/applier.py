"""Applying one round's outcome to this node: the shards' update signs at that round's learning rate, the pieces of
this node's contribution that no update included back into its momentum, the new round and digest."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from demo_node.core.optimizer import DeMo
from demo_node.node.replica import Replica
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.outcome import RoundOutcome
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.errors import PayloadError

log = logging.getLogger(__name__)


@dataclass
class AppliedRound:
    outcome: RoundOutcome
    digest: bytes
    """Of the parameters after this round."""
    left_out: bool
    """Some of this node's contribution was in no applied update (it went back into the momentum)."""
    skipped: int
    """Shards whose result nobody had (their blocks got no sign step)."""
    seconds: float = 0.0
    """Spent applying it here (decoding the shard results, the sign step, the digest)."""
    undecodable: str = ""
    """The reason the round's shard results could not be used (then the whole round was skipped here)."""


class RoundApplier:
    def __init__(self, opt: DeMo, replica: Replica, signs: ShardSigns, counters: SwarmCounters, run_id: str,
                 me: bytes, set_round_lr: Callable[[int], None]):
        self.opt, self.replica, self.signs, self.counters = opt, replica, signs, counters
        self.run_id, self.me, self.set_round_lr = run_id, me, set_round_lr

    def apply(self, o: RoundOutcome) -> AppliedRound:
        """Apply round ``o.round``, which must be the replica's next round."""
        assert o.round == self.replica.round, (o.round, self.replica.round)
        begun = time.perf_counter()
        self.set_round_lr(o.round)
        undecodable = ""
        try:
            pieces, skipped = o.sign_pieces(self.signs, self.opt.layout, self.run_id, self.me,
                                            out=self.opt.sign_buffers())
        except PayloadError as exc:
            self.counters.refused(exc.reason)
            log.warning("round %d: a shard result did not decode (%s): skipping the round here", o.round, exc)
            pieces, skipped, undecodable = [], len(o.shards), exc.reason
        with self.replica.writing():
            self.opt.apply_signs(pieces)
            self.replica.round = o.round + 1
        left_out = False
        for part in o.excluded_parts(self.me):
            self.opt.restore(part)
            left_out = True
        digest = self.replica.digest()
        return AppliedRound(o, digest, left_out, skipped, time.perf_counter() - begun, undecodable)
