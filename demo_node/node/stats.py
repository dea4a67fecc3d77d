"""What the operator sees of a node: its Prometheus metrics, the control API's status reply, and its event lines
(started, synced, joined, round, eval, diverged, checkpoint, left)."""

from __future__ import annotations

import time
from typing import Callable

from demo_node.version import __version__
from demo_node.net.accounting import Accounting
from demo_node.node.applier import AppliedRound
from demo_node.node.events import Reporter
from demo_node.node.metrics import NodeMetrics, all_refusals
from demo_node.node.states import NodeState
from demo_node.swarm.counters import SwarmCounters
from demo_node.wire.proto import demo_node_control_pb2 as cpb


class NodeStats:
    def __init__(self, reporter: Reporter, accounting: Accounting, counters: SwarmCounters,
                 dht_rejected: Callable[[], dict[str, int]] = dict, network: Callable[[], dict] = dict):
        self.reporter, self.accounting, self.counters = reporter, accounting, counters
        self.network = network
        """{"reachability": public/private/unknown, "paths": peer -> direct/relayed, "owns_shards": bool}"""
        self.started = time.monotonic()
        self.state = NodeState.STARTING
        self.rounds_applied = 0
        """Rounds this process applied as a member."""
        self.own_late = 0
        self.synced_at: float | None = None
        self.joined_at: float | None = None
        self.last_loss = float("nan")
        self.held_out_loss = float("nan")
        self.tokens_per_s = 0.0
        self.last_tokens = 0
        self.last_compute = 0.0
        """Seconds between the previous step's return and this step: the caller's forward and backward."""
        self.last_prepare = 0.0
        """Seconds the last step spent preparing its contribution (momentum, transform, top-k)."""
        self.last_digest = b""
        self.last_members = 0
        self.peers_known = 0
        self.last_checkpoint_time = time.time()
        self.metrics = NodeMetrics(accounting, counters, lambda: self.own_late, lambda: self.last_checkpoint_time,
                                   dht_rejected, network)
        self._last_step = self._last_return = time.monotonic()

    # -- the training side -------------------------------------------------------------------------------------
    def reset_clock(self) -> None:
        """Joined: throughput and compute time count from now."""
        self._last_step = self._last_return = time.monotonic()

    def stepped(self, samples: float, tokens: int, loss: float | None) -> None:
        """A step's gradient is ready: what it was computed on. Compute time counts from the previous step's
        return; tokens/s is over the whole cycle since the previous step began (compute, exchange and waiting)."""
        now = time.monotonic()
        cycle = max(1e-9, now - self._last_step)
        self._last_step = now
        m = self.metrics
        self.last_compute = max(0.0, now - self._last_return)
        m.compute.observe(self.last_compute)
        m.samples.inc(samples)
        if tokens:
            m.tokens.inc(tokens)
        self.tokens_per_s = tokens / cycle
        self.last_tokens = tokens
        m.tokens_per_second.set(self.tokens_per_s)
        if loss is not None:
            self.last_loss = float(loss)
            m.loss.set(self.last_loss)

    def prepared(self, seconds: float) -> None:
        self.last_prepare = seconds

    def step_returned(self) -> None:
        """Time spent in step() itself is not compute: the next step's compute time counts from here."""
        self._last_return = time.monotonic()

    def applied(self, a: AppliedRound, round_now: int) -> None:
        o = a.outcome
        self.last_digest, self.last_members = a.digest, len(o.plan.members)
        m = self.metrics
        m.rounds.inc()
        m.round.set(round_now)
        m.round_duration.observe(o.seconds)
        m.participants.set(len(o.plan.members))
        m.contributors.set(len({p for s in o.shards if s.applied for p in s.senders}))
        if a.left_out:
            self.own_late += 1
        if a.skipped:
            m.skipped.inc(a.skipped)
        checks: dict[str, int] = {}
        for s in o.shards:
            if s.check:
                checks[s.check] = checks.get(s.check, 0) + 1
                m.shard_checks.labels(s.check).inc()
        m.demoted.set(len(o.demoted))
        m.benched.set(len(o.benched))
        if o.member:
            self.rounds_applied += 1
            if self.joined_at is None and self.synced_at is not None:
                self.joined_at = time.monotonic()
                self.reporter.event("joined", round=o.round, seconds_since_start=round(self.joined_at - self.started, 3))
        totals = self.accounting.totals()
        self.reporter.event(
            "round", round=o.round, loss=self.last_loss, tokens=self.last_tokens, tokens_per_s=self.tokens_per_s,
            members=len(o.plan.members), owners=len(o.plan.owners), mode=o.plan.mode, round_seconds=round(o.seconds, 3),
            compute_s=round(self.last_compute, 4), optimizer_s=round(self.last_prepare + a.seconds, 4),
            skipped_shards=a.skipped, left_out=a.left_out, contributed=o.contribution is not None, member=o.member,
            digest=a.digest.hex()[:16], bytes_sent=totals["sent"], bytes_received=totals["received"],
            fetched=[s.owner.hex()[-12:] for s in o.shards if s.source == "peer"],
            refused=sorted(set(o.refusals.values())), rejects=all_refusals(self.counters, self.accounting), checks=checks,
            demoted=sorted(p.hex()[-12:] for p in o.demoted),
            benched={p.hex()[-12:]: until for p, until in sorted(o.benched.items())},
            skips={s.owner.hex()[-12:]: s.skip or "silent" for s in o.shards if not s.applied},
        )

    def evaluated(self, loss: float, round: int, **figures) -> None:
        self.held_out_loss = float(loss)
        self.metrics.held_out_loss.set(self.held_out_loss)
        self.reporter.event("eval", round=round, held_out_loss=self.held_out_loss, **figures)

    def synced(self, round: int, source: str, seconds: float, nbytes: int) -> None:
        self.synced_at = time.monotonic()
        self.metrics.state_syncs.inc()
        self.reporter.event("synced", round=round, source=source, seconds=round_(seconds), bytes=nbytes)

    def diverged(self, round: int, digest_round: int, mine: bytes, majority: bytes, holders: int) -> None:
        self.metrics.digest_mismatches.inc()
        self.reporter.event("diverged", round=round, digest_round=digest_round, mine=mine.hex()[:16],
                            majority=majority.hex()[:16], holders=holders)

    def checkpointed(self, path: str, round: int) -> None:
        self.last_checkpoint_time = time.time()
        self.metrics.checkpoints.inc()
        self.reporter.event("checkpoint", round=round, path=path)

    def left(self, round: int) -> None:
        per_peer_kind = {f"{peer}/{kind}/{direction}": n
                         for (peer, kind, direction), n in self.accounting.snapshot().items()}
        self.reporter.event("left", round=round, rounds=self.rounds_applied, bytes=per_peer_kind,
                            relayed_bytes=self.accounting.relayed(), paths=dict(self.network().get("paths", {})))

    # -- the control API ---------------------------------------------------------------------------------------
    def status(self, run_id: str, peer_id: str, maddrs: list[str], round: int, device: str) -> cpb.StatusReply:
        totals, relayed, net = self.accounting.totals(), self.accounting.relayed(), self.network()
        paths = list(net.get("paths", {}).values())
        return cpb.StatusReply(
            reachability=net.get("reachability", ""), direct_connections=paths.count("direct"),
            relayed_connections=paths.count("relayed"), relayed_bytes_sent=relayed["sent"],
            relayed_bytes_received=relayed["received"], owns_shards=bool(net.get("owns_shards")),
            run_id=run_id, peer_id=peer_id, state=self.state.value, round=round, members=self.last_members,
            peers_known=self.peers_known, loss=self.last_loss, held_out_loss=self.held_out_loss,
            bytes_sent=totals["sent"], bytes_received=totals["received"], digest=self.last_digest.hex(),
            maddrs=maddrs, uptime_seconds=time.monotonic() - self.started, device=device, version=__version__,
        )


def round_(x: float) -> float:
    return round(x, 3)
