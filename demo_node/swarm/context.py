"""What the parts of the round protocol share: this node's identity and network, the run's settings and limits, the
round books, the arithmetic of a shard, and the few sizes and waits they all derive from the same way.

The round loop makes one and hands it to the handlers that answer peers, to the asking and the checking, and to the
evidence that accusations rest on; none of them knows the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from demo_node.core.layout import Layout
from demo_node.crypto import Identity
from demo_node.net.transport import Transport
from demo_node.swarm.books import RoundBooks
from demo_node.swarm.config import DefenseConfig, RoundConfig
from demo_node.swarm.counters import SwarmCounters
from demo_node.limits import Limits
from demo_node.swarm.patience import Patience
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.results import Received, open_result
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.codec import max_payload_bytes

if TYPE_CHECKING:  # the checker takes a context itself: it is set on the context once made
    from demo_node.swarm.checking import Checker


@dataclass(kw_only=True)
class RunSettings:
    """What the round protocol needs to know of the run and of this node's role in it."""

    run_id: str
    values: str
    """The run's value precision (the payload's size decides the exchange mode)."""
    aggregation: str
    """The run's aggregation rule (owners and verifiers aggregate)."""
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    client: bool = False
    """This node owns no shards."""
    device: torch.device | str = "cpu"
    """Where an owner or verifier aggregates and inverts a shard."""


class RoundContext:
    def __init__(self, transport: Transport, layout: Layout, me: bytes, run: RunSettings, cfg: RoundConfig,
                 counters: SwarmCounters, limits: Limits, books: RoundBooks):
        self.transport, self.layout, self.me, self.run, self.cfg = transport, layout, me, run, cfg
        self.counters, self.limits, self.books = counters, limits, books
        self.identity: Identity = transport.host.identity
        self.max_payload = max(max_payload_bytes(layout), max_payload_bytes(layout.cut()))
        """The largest payload, or cut of a shard's aggregate, a peer may send."""
        self.max_verdict = limits.small_message + max(self.max_payload // 4, max_payload_bytes(layout.cut()))
        """The largest verdict: it carries the verifier's own update of the shard (in sparse exchange its cut)."""
        d = run.defense
        self.signs = ShardSigns(layout, run.aggregation, run.device, robust=d.robust_aggregation,
                                max_sample_weight=d.max_sample_weight)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="demo-node-shards")
        self.checker: "Checker | None" = None

    async def compute(self, fn: Callable[[], object]) -> object:
        """Run shard arithmetic (aggregation, inverse transform) off the network thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def patience(self, expected: int, since: float | None = None) -> Patience:
        """How long to wait for ``expected`` answers asked for at once (see demo_node/swarm/patience.py)."""
        return Patience(expected, self.limits.patience_grace, self.limits.patience_share, since)

    def owner_timeout(self) -> float:
        """The most any wait on one peer may take (it is cut shorter once other peers answered: see patience)."""
        return 2 * self.cfg.deadline + self.limits.owner_slack

    def result_limit(self, plan: RoundPlan) -> int:
        """The largest shard result a round of this plan can give: a relay result holds every member's payload."""
        return (len(plan.members) + 2) * (self.max_payload + 2048) + (1 << 20)

    def evidence_limit(self) -> int:
        """The largest Evidence a peer may send: two claims and every member's payload."""
        members = len(self.books.members.get(self.books.round, ()))
        return (members + 4) * (self.max_payload + 2048) + (1 << 20) + 4 * (self.layout.num_params // 8)

    def open_result(self, r: int, owner: bytes, data: bytes, plan: RoundPlan) -> Received | None:
        """A shard result's bytes, checked; an owner that says this node is out of step is noted in the books."""
        got, ahead = open_result(data, r, owner, plan, self.counters)
        if ahead:
            self.books.out_of_step.setdefault(r, {})[owner] = ahead
        return got
