"""The training side's half of every round: take the round loop's outcomes as they come and apply them to the
parameters, in order, or download the swarm's state instead when this node is out of step; then what follows an
applied round (the digest vote, a checkpoint now and then, telling the operator when it is alone)."""

from __future__ import annotations

import logging
import queue
import time
from typing import Callable

from demo_node.net.host import peer_b58
from demo_node.node.applier import RoundApplier
from demo_node.node.checkpointing import Checkpoints
from demo_node.node.events import Reporter
from demo_node.node.peer import Peer
from demo_node.node.replica import Replica
from demo_node.node.states import NodeState
from demo_node.node.stats import NodeStats
from demo_node.node.sync import StateSync
from demo_node.swarm.driver import Handoff, RoundDriver
from demo_node.swarm.outcome import RoundOutcome

log = logging.getLogger(__name__)


class RoundFollower:
    def __init__(self, driver: RoundDriver, replica: Replica, applier: RoundApplier, sync: StateSync,
                 checkpoints: Checkpoints, stats: NodeStats, reporter: Reporter, peer: Peer,
                 set_state: Callable[[NodeState], None]):
        self.driver, self.replica, self.applier, self.sync = driver, replica, applier, sync
        self.checkpoints, self.stats, self.reporter, self.peer, self.set_state = \
            checkpoints, stats, reporter, peer, set_state
        self.member_next = False
        """This node is a member of the next round (its last outcome said so, or it founded the swarm)."""

    def apply_ready(self, until: Handoff | None = None, block: float = 0.0,
                    leaving: Callable[[], bool] = lambda: False) -> None:
        """Apply the round outcomes that are ready. With ``until``, wait for the outcome that carries that hand-over
        (or for the round loop to end, or for a leave asked before the hand-over was taken); with ``block``, wait up
        to that many seconds for outcomes."""
        outcomes = self.driver.outcomes
        deadline = time.monotonic() + block
        while True:
            waiting = until is not None or time.monotonic() < deadline
            try:
                outcome = outcomes.get(timeout=0.05) if waiting else outcomes.get_nowait()
            except queue.Empty:
                if until is None:
                    if time.monotonic() >= deadline:
                        return
                elif self.driver.finished.is_set() or (leaving() and not until.taken.is_set()):
                    return
                continue
            self.apply(outcome)
            if until is not None and outcome.contribution is until.contribution:
                return

    def apply(self, o: RoundOutcome) -> None:
        if o.epoch < self.sync.epoch or o.round < self.replica.round:
            return  # from before a jump, or already in the parameters (they came from a snapshot)
        if o.out_of_step or (not o.member and any(s.body is None and s.check != "missing" for s in o.shards)):
            # most owners say this node is not in their round (it fell far behind, ran ahead alone on the other
            # side of a partition, or planned another round), or, following the rounds it missed, it could not get
            # all of one (a member skips a shard that nobody has, like every other member; a joiner does not know
            # what the swarm did, unless the shard's verifier says nobody had it): it must not go on alone, so it
            # downloads the swarm's state and continues there
            self.sync.catch_up(o.out_of_step or o.round + 1)
            return
        if o.round > self.replica.round:
            log.warning("round %d outcome while at round %d: resyncing", o.round, self.replica.round)
            self.sync.resync(o.round)
            if o.round < self.replica.round:
                return
            self.replica.advance(o.round)  # could not resync: the digest check repairs it later
        applied = self.applier.apply(o)
        if self.driver.listening:
            self.driver.stop_listening()  # a round applied on the swarm's parameters: this node may be counted now
        me = self.peer.peer_id
        self.member_next = any(m.peer == me for m in o.next_members)
        self.set_state(NodeState.TRAINING if o.member else NodeState.JOINING)
        self.driver.set_digest(self.replica.round, applied.digest)
        self.stats.applied(applied, self.replica.round)
        if o.member and len(o.plan.members) > 1 and [m.peer for m in o.next_members] == [me]:
            gone = sorted(peer_b58(m.peer) for m in o.plan.members if m.peer != me)
            self.reporter.event("alone", round=o.round, gone=gone, peers=self.peer.maddrs[:1])
            log.warning("round %d: the other members left or went silent (%s): this node trains on alone until "
                        "others join (--peers %s)", o.round, ", ".join(p[-8:] for p in gone),
                        (self.peer.maddrs or ["<its address>"])[0])
        self.stats.metrics.accused.set(len(self.driver.checker.accused))
        self.sync.check_digest(o)
        if o.member and self.checkpoints.due():
            self.checkpoints.save(self.sync.matched)
