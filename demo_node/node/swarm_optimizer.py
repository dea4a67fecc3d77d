"""The public Python API: ``SwarmOptimizer``, DeMo over a swarm of peers, for any model and training loop.

    opt = SwarmOptimizer(model.parameters(), run_name="my-run", peers=[...], lr=3e-4)
    for batch in loader:
        model(batch).loss.backward()
        opt.step(samples=len(batch))        # one averaging round with the swarm
        opt.zero_grad()
    opt.leave()                             # or use it as a context manager

It is a ``torch.optim.Optimizer`` (DeMo: param groups, LR schedulers, ``state_dict``) whose ``step()`` folds the
gradient into this node's momentum, hands the top-k of it to the round loop, and applies the round's update, the
same on every node. Joining (on the first step, or :meth:`join`) resumes from ``checkpoint_dir``, downloads the
swarm's parameters into the model, and follows rounds until this node is a member. The pieces, one job each:
:class:`Peer` (network), :class:`RoundDriver` (the round loop, network thread), :class:`RoundApplier` (an outcome onto
the parameters), :class:`Replica` (parameters, round, digest, snapshots), :class:`NodeStats` (what the operator
sees), :class:`SafePoints` (requests served between rounds), :class:`Announcer` (DHT records).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import time
import warnings
from typing import Any, Callable, Iterable, Mapping

import torch

from demo_node import __version__
from demo_node.core.optimizer import DeMo
from demo_node.net.host import peer_b58
from demo_node import checkpoint
from demo_node.node.announcer import Announcer
from demo_node.node.applier import RoundApplier
from demo_node.node.config import SwarmConfig
from demo_node.node import registry
from demo_node.node.control import Controls, ControlServer
from demo_node.node.events import Reporter
from demo_node.node.joining import Downloaded, JoinError, download, refuse_other_runs, settle_run
from demo_node.node.peer import Peer
from demo_node.node.replica import Replica
from demo_node.node.safepoints import SafePoints
from demo_node.node.states import NodeState
from demo_node.node.stats import NodeStats
from demo_node.options import as_dict
from demo_node.run_identity import canonical
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.discovery import PeerRecord
from demo_node.swarm.driver import Handoff, RoundDriver, RunSettings
from demo_node.swarm.limits import LIMITS, Limits
from demo_node.swarm.membership import digest_majority, majority_decides
from demo_node.swarm.outcome import RoundOutcome
from demo_node.swarm.plan import Member
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.state_sync import Snapshot, StateServer
from demo_node.wire.codec import encoded_size
from demo_node.wire.proto import demo_node_control_pb2 as cpb

log = logging.getLogger(__name__)
STATE_FORMAT = 1
"""Version of the ``swarm`` entry of :meth:`SwarmOptimizer.state_dict`."""
RESERVED_SECTIONS = ("optimizer", "defense", "params")
"""Sections of the run's config that the optimizer writes itself."""

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class SwarmOptimizer(DeMo):
    """DeMo whose ``step()`` is one round of a swarm. Options (keyword arguments) are the fields of
    :class:`SwarmConfig`'s parts: the run (``run_name``, ``run_id``), DeMo (``lr``, ``topk``, ...), the rounds
    (``deadline``, ``exchange``, ``overlap``, ...), the network (``peers``, ``listen``, ``identity``, ...) and the
    service (``checkpoint_dir``, ``metrics``, ``control``, ...).

    ``peer``: a :class:`Peer` made beforehand (else one is made from the network options and closed on leaving).
    ``run_config``: more sections of the run's definition, hashed into the run id and checked against every peer's
    (describe there what the options cannot see: the model, the data, the schedule). ``scheduler``: a factory
    ``opt -> LR scheduler``, stepped so that its epoch is always the swarm's round (a joiner's too): the way to
    change the lr over a run with every node applying the same one. ``extra_state``: called at every checkpoint
    for more state to keep (a data stream's position); after resuming it is in :attr:`resumed`. ``reporter``: where
    event lines go (default: the ``demo_node.events`` logger).
    """

    def __init__(self, params: Iterable, *, config: SwarmConfig | None = None, peer: Peer | None = None,
                 run_config: Mapping[str, Mapping[str, Any]] | None = None, scheduler: SchedulerFactory | None = None,
                 extra_state: Callable[[], Any] | None = None, reporter: Reporter | None = None,
                 limits: Limits = LIMITS, **options: Any):
        cfg = SwarmConfig.from_options(config, **options)
        super().__init__(params, config=cfg.optimizer)
        self.swarm_config, self.limits = cfg, limits
        self.reporter = reporter or Reporter("log")
        self.counters = SwarmCounters()
        self.safepoints = SafePoints()
        self.replica = Replica([p for _, p in self._trainable()])
        if not self.replica.params:
            raise ValueError("SwarmOptimizer got no trainable parameters")
        self.device = self.replica.params[0].device
        self.resumed: Any = None
        """What ``extra_state`` returned when the checkpoint this node resumed from was written (None otherwise)."""
        self._extra_state = extra_state
        self._own_peer = peer is None
        self.peer = peer
        self.control: ControlServer | None = None
        self._registered = None
        """This node's file in the registry of running nodes (see demo_node/node/registry.py)."""
        self.stats: NodeStats | None = None
        self._joined = self._left = False
        self._running = False
        """The round loop was started (leaving then means finishing a round)."""
        self._member_next = False
        self._last_catch_up = float("-inf")
        self._synced_round = 0
        """The round of the last downloaded state (digests this node signed before it describe replaced parameters)."""
        self._following: tuple[str, int] | None = None
        """The source and round of the state transfer the round loop follows from (see _follow_from)."""
        self._epoch = 0
        """Outcomes of an earlier epoch were produced before the round loop jumped to a downloaded state: ignored."""
        self._digest_matched = False
        """The last digest vote agreed with this node's digest (its checkpoints are then marked as vouched for)."""
        self._reports: dict[int, dict[bytes, bytes]] = {}
        """Digest round -> member -> the digest it reported for it, over the last rounds' statements."""
        self._handoff: Handoff | None = None
        self._checkpointed = -1
        """The round of the parameters the last checkpoint holds (leaving writes none if it is the current one)."""
        try:
            self._start(cfg, run_config, scheduler)
        except BaseException:
            self._close()
            raise

    def _start(self, cfg: SwarmConfig, run_config, scheduler: SchedulerFactory | None) -> None:
        if self.peer is None:
            self.peer = Peer(cfg.network, self.limits)
        cfg.network = self.peer.config
        self.me = self.peer.peer_id
        records = self.peer.host.records
        self.stats = NodeStats(self.reporter, self.peer.accounting, self.counters, lambda: dict(records.rejected))
        for what, address in (("control API", cfg.service.control), ("metrics", cfg.service.metrics)):
            host = address.rpartition(":")[0].strip("[]")
            if address and host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("the %s listens on %s: anyone who can reach that address can use it (%s)", what, address,
                            "status, checkpoint, leave" if what == "control API" else "read this node's figures")
        if cfg.service.control:
            self.control = ControlServer(Controls(self._status, self.safepoints.request_checkpoint, self.request_leave))
            self.control_port = self.control.start(cfg.service.control)
            if not cfg.service.control.endswith(":0") and self.control.address != cfg.service.control:
                log.warning("control API: %s is taken (another node on this machine?): listening on %s instead "
                            "(demo-node status --peer %s finds it)", cfg.service.control, self.control.address,
                            self.peer.peer_id_b58[-8:])
        else:
            self.control_port = 0
        self.metrics_port = self.stats.metrics.serve(cfg.service.metrics) if cfg.service.metrics else 0
        self.run_config = self._define_run(run_config or {})
        refuse_other_runs(self.peer.greeted(), cfg.run.run_name, cfg.run.run_id)
        self.run_id = settle_run(self.peer.runs(), self.run_config, cfg.run.run_id)
        self.peer.identify(canonical(self.run_config), lambda: self.stats.state, lambda: self.replica.round)
        self.reporter.bind(self.run_id, self.peer.peer_id_b58, lambda: max(0, self.replica.round - 1))
        if self.control is not None:
            folders = [os.path.abspath(f) for f in (cfg.service.checkpoint_dir,
                                                    os.path.dirname(cfg.network.identity) if cfg.network.identity
                                                    else "") if f]
            self._registered = registry.register(registry.NodeEntry(self.control.address, os.getpid(),
                                                                    self.peer.peer_id_b58, self.run_id, folders))
        self.scheduler = scheduler(self) if scheduler is not None else None
        run = RunSettings(run_id=self.run_id, values=cfg.optimizer.values, aggregation=cfg.optimizer.aggregation,
                          defense=cfg.defense, client=cfg.network.client_mode, device=self.device)
        self.driver = RoundDriver(self.peer.transport, self.layout, self.me, run, cfg.round, self.counters, self.limits)
        signs = ShardSigns(self.layout, cfg.optimizer.aggregation, self.device, robust=cfg.defense.robust_aggregation,
                           max_sample_weight=cfg.defense.max_sample_weight)
        self.applier = RoundApplier(self, self.replica, signs, self.counters, self.run_id, self.me, self._set_round_lr)
        self.announcer = Announcer(self.peer, self.run_id, canonical(self.run_config), lambda: self.stats.state,
                                   lambda: self.replica.round, self._peers_known, self.limits)
        m = self.stats.metrics
        m.info.info({"version": __version__, "run_id": self.run_id, "peer_id": self.peer.peer_id_b58,
                     "device": str(self.device)})
        m.compression.set(4 * self.layout.num_params / encoded_size(self.layout, cfg.optimizer.values, run_id=self.run_id))

    def _define_run(self, extra: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """The run's definition: its name, DeMo's options, the parameters' shapes, and the caller's sections."""
        shapes = [(tuple(p.shape), str(p.dtype)) for p in self.replica.params]
        run: dict[str, dict[str, Any]] = {
            "run": {"run_name": self.swarm_config.run.run_name},
            "optimizer": as_dict(self.swarm_config.optimizer),
            "defense": as_dict(self.swarm_config.defense),
            "params": {"count": sum(p.numel() for p in self.replica.params),
                       "shapes": hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]},
        }
        for section, items in extra.items():
            if section in RESERVED_SECTIONS:
                raise ValueError(f"run_config: section {section!r} is the optimizer's own")
            if section == "run" and "run_name" in items:
                raise ValueError("run_config: give the run's name as run_name=, not in run_config")
            run.setdefault(section, {}).update(dict(items))
        return run

    # -- what a user calls ---------------------------------------------------------------------------------------
    @property
    def round(self) -> int:
        """The next round this node applies (rounds are counted from the run's start)."""
        return self.replica.round

    @property
    def rounds_applied(self) -> int:
        """Rounds this optimizer applied as a member."""
        return self.stats.rounds_applied

    @property
    def members(self) -> int:
        """Members of the last round this node applied."""
        return self.stats.last_members

    def wait_round(self, timeout: float) -> None:
        """Apply the rounds that end within ``timeout`` seconds without contributing (joining first if need be).
        Meanwhile the rounds do not wait for this node's gradient (a founder waiting for peers keeps its rounds
        short, so a joiner's state transfer, which waits for a few of them, is quick)."""
        self.join()
        self.driver.idle(True)
        try:
            self._apply_ready(block=timeout)
        finally:
            self.driver.idle(False)

    def wait_for_members(self, count: int, timeout: float | None = None) -> bool:
        """Wait until the swarm has ``count`` members (this node included), following its rounds without
        contributing: what a founder does before it trains, so that its first rounds are not spent alone. False if
        ``timeout`` seconds passed first (or a leave was asked for)."""
        end = None if timeout is None else time.monotonic() + timeout
        self.join()
        while self.members < count and not self.leave_requested:
            left = 1.0 if end is None else min(1.0, end - time.monotonic())
            if left <= 0:
                return False
            self.wait_round(timeout=left)
        return self.members >= count

    @property
    def leave_requested(self) -> bool:
        """True once someone asked this node to leave (:meth:`request_leave`, the control API): finish the loop and
        call :meth:`leave`."""
        return self.safepoints.leave_requested

    def request_leave(self) -> None:
        """Ask the training loop to leave (safe from a signal handler)."""
        self.safepoints.request_leave()

    def digest(self) -> bytes:
        """The digest of this node's parameters (the same on every node that applied the same rounds)."""
        return self.replica.digest()

    def join(self) -> "SwarmOptimizer":
        """Resume from ``checkpoint_dir``, download the swarm's parameters into the model, and follow rounds until
        this node is a member (the first ``step()`` does this when it was not called)."""
        if self._joined:
            return self
        if self._left:
            raise JoinError("this optimizer has left the swarm: make a new one to join again")
        self._joined = True
        resumed = self._resume()
        sources = self.peer.peers_of(self.run_id)
        self.peer.host.call(StateServer(self.peer.transport, self._provide_snapshot, self.limits).start())
        self.reporter.event("started", maddrs=self.peer.maddrs, p2pd_pid=self.peer.p2pd_pid, device=str(self.device),
                            metrics_port=self.metrics_port, control_port=self.control_port,
                            control=self.control.address if self.control is not None else "",
                            params=self.layout.num_params, resumed_round=resumed, peers_found=len(sources),
                            run_config=self.run_config)
        client = self.swarm_config.network.client_mode
        if sources:
            self._set_state(NodeState.JOINING)
            begun = time.monotonic()
            got = self._first_download(sources)
            self._follow(got)
            self.stats.synced(got.round, got.source, time.monotonic() - begun, sum(self.replica.sizes()))
            self._synced_round = got.round
            self._member_next = False
            self.driver.set_digest(self.replica.round, self.replica.digest())
        else:
            if client:
                raise JoinError("a client-mode node cannot start a swarm: give the peers of a running one")
            self._member_next = True
            self.driver.set_digest(self.replica.round, self.replica.digest())
            self.peer.host.call(self.driver.start(self.replica.round, [Member(self.me, client)], True))
            self._running = True
        self._set_state(NodeState.TRAINING if self._member_next else NodeState.JOINING)
        self.announcer.start()
        while not self._member_next:
            if self.driver.finished.is_set() or self.leave_requested:
                break
            self._apply_ready(block=0.1)
        self.stats.reset_clock()
        return self

    def _first_download(self, sources: list[PeerRecord]) -> Downloaded:
        """The swarm's parameters, trying again for ``join_patience`` seconds: a transfer that a busy or restarting
        peer cuts off is no reason to give up joining (the sources are asked again, the DHT's newest first)."""
        end = time.monotonic() + self.limits.join_patience
        while True:
            try:
                return download(self.peer, self.replica, sources, 0, self.run_config, self.run_id,
                                on_header=self._follow_from)
            except JoinError as exc:
                if time.monotonic() >= end or self.leave_requested:
                    raise
                log.warning("%s: trying again", exc)
                time.sleep(self.limits.catch_up_interval)
                sources = self.peer.peers_of(self.run_id) or sources

    def step(self, closure: Callable[[], Any] | None = None, *, samples: float = 1.0, loss: float | None = None,
             tokens: int = 0, last: bool = False) -> Any:
        """One round with the swarm: fold the gradients into the momentum, hand the top-k to the round, and apply
        the round's update (with ``overlap``, apply the rounds that are done and return at once).

        ``samples``: the weight of this node's contribution (the sequences behind its gradient). ``loss`` and
        ``tokens`` only feed the metrics and the round line. A node that is not a member yet waits until it is."""
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
            if loss is None and result is not None:
                loss = float(result)
        self.join()
        if self._left:
            raise JoinError("this optimizer has left the swarm: make a new one to join again")
        self.stats.stepped(samples, tokens, loss)
        overlap = self.swarm_config.round.overlap
        if overlap:
            self._apply_ready()
            samples += self._withdraw()
        self._set_round_lr(self.replica.round)
        begun = time.perf_counter()
        contribution = self.prepare(samples)
        self.stats.prepared(time.perf_counter() - begun)
        self._handoff = self.driver.hand_over(contribution)
        if last:
            # the round that takes this contribution is this node's leaving round: leave() then runs no extra one
            self.safepoints.request_leave()
            self.driver.request_leave()
        if not overlap:
            self._apply_ready(until=self._handoff)
        self.safepoints.serve(self._checkpoint)
        self.stats.step_returned()
        return result

    def report_eval(self, held_out_loss: float, **figures) -> None:
        """Record a held-out loss the caller measured (metrics, status, an "eval" line with ``figures`` too)."""
        self.stats.evaluated(held_out_loss, self.replica.round - 1, **figures)

    def leave(self) -> None:
        """Finish the round in flight, checkpoint, mark this node left and stop (a second call does nothing)."""
        if self._left:
            return
        if self._running and not self.driver.finished.is_set():
            self._set_state(NodeState.LEAVING)
            self.safepoints.request_leave()
            self._withdraw()
            self.driver.request_leave()
            while not (self.driver.finished.is_set() and self.driver.outcomes.empty()):
                self._apply_ready(block=0.1)
            self._withdraw()
        if self._running and self.swarm_config.service.checkpoint_dir and self._checkpointed != self.replica.round:
            self._checkpoint()
        self._set_state(NodeState.LEFT)
        self._close()
        self._left = True
        if self._running:
            self.stats.left(self.replica.round - 1)

    def __enter__(self) -> "SwarmOptimizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.leave()

    # -- state_dict: DeMo's (the momentum) plus the round and the run --------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["swarm"] = {"format": STATE_FORMAT, "round": self.replica.round, "run_id": self.run_id,
                          "peer_id": self.peer.peer_id_b58}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        swarm = state.pop("swarm", None)
        if swarm is not None and swarm.get("run_id") != self.run_id:
            raise ValueError(f"this state belongs to run {swarm.get('run_id')}, this optimizer trains {self.run_id}")
        super().load_state_dict(state)
        if swarm is not None:
            self.replica.advance(int(swarm["round"]))

    # -- the round's outcomes -------------------------------------------------------------------------------------
    def _apply_ready(self, until: Handoff | None = None, block: float = 0.0) -> None:
        """Apply the round outcomes that are ready. With ``until``, wait for the outcome that carries that
        hand-over (or for the round loop to end, or for a leave asked before the hand-over was taken); with
        ``block``, wait up to that many seconds for outcomes."""
        deadline = time.monotonic() + block
        while True:
            waiting = until is not None or time.monotonic() < deadline
            try:
                outcome = self.driver.outcomes.get(timeout=0.05) if waiting else self.driver.outcomes.get_nowait()
            except queue.Empty:
                if until is None:
                    if time.monotonic() >= deadline:
                        return
                elif self.driver.finished.is_set() or (self.leave_requested and not until.taken.is_set()):
                    return
                continue
            self._apply_outcome(outcome)
            if until is not None and outcome.contribution is until.contribution:
                return

    def _apply_outcome(self, o: RoundOutcome) -> None:
        if o.epoch < self._epoch or o.round < self.replica.round:
            return  # from before a jump, or already in the parameters (they came from a snapshot)
        if o.out_of_step or (not o.member and any(s.body is None and s.check != "missing" for s in o.shards)):
            # most owners say this node is not in their round (it fell far behind, ran ahead alone on the other
            # side of a partition, or planned another round), or, following the rounds it missed, it could not get
            # all of one (a member skips a shard that nobody has, like every other member; a joiner does not know
            # what the swarm did, unless the shard's verifier says nobody had it): it must not go on alone, so it
            # downloads the swarm's state and continues there
            self._catch_up(o.out_of_step or o.round + 1)
            return
        if o.round > self.replica.round:
            log.warning("round %d outcome while at round %d: resyncing", o.round, self.replica.round)
            self._resync(o.round)
            if o.round < self.replica.round:
                return
            self.replica.advance(o.round)  # could not resync: the digest check repairs it later
        applied = self.applier.apply(o)
        if self.driver.listening:
            self.driver.stop_listening()  # a round applied on the swarm's parameters: this node may be counted now
        self._member_next = any(m.peer == self.me for m in o.next_members)
        self._set_state(NodeState.TRAINING if o.member else NodeState.JOINING)
        self.driver.set_digest(self.replica.round, applied.digest)
        self.stats.applied(applied, self.replica.round)
        if o.member and len(o.plan.members) > 1 and [m.peer for m in o.next_members] == [self.me]:
            gone = sorted(peer_b58(m.peer) for m in o.plan.members if m.peer != self.me)
            self.reporter.event("alone", round=o.round, gone=gone, peers=self.peer.maddrs[:1])
            log.warning("round %d: the other members left or went silent (%s): this node trains on alone until "
                        "others join (--peers %s)", o.round, ", ".join(p[-8:] for p in gone),
                        (self.peer.maddrs or ["<its address>"])[0])
        self.stats.metrics.accused.set(len(self.driver.checker.accused))
        self._check_digest(o, applied.digest)
        service = self.swarm_config.service
        if service.checkpoint_dir and o.member and self.replica.round % service.checkpoint_every == 0:
            self._checkpoint()

    def _check_digest(self, o: RoundOutcome, mine: bytes) -> None:
        """If the digest this node signed differs from the one most members signed for the same round, download the
        parameters of those members. Demoted members (proven liars) have no vote: with them out, two honest members
        that a failure split are two, and one takes the other's state."""
        reported = o.statements.by_peer.get(self.me)
        if reported is None or not reported.digest or reported.digest_round < self._synced_round:
            return  # nothing said, or said of parameters that a download has replaced since
        members = {m.peer for m in o.plan.members if m.peer not in o.demoted or m.peer == self.me}
        self._digest_matched = self._agreed(o, members)
        majority = digest_majority(o.statements, members, reported.digest_round)
        if majority is None or reported.digest == majority[0]:
            return
        if not majority_decides(majority[1], members):
            return
        self.stats.diverged(o.round, reported.digest_round, reported.digest, majority[0], len(majority[1]))
        self._resync(self.replica.round, sources=majority[1], members=members - {self.me})

    def _agreed(self, o: RoundOutcome, members: set[bytes]) -> bool:
        """Whether the latest digest that another member reported for a round this node reported too was this
        node's (and most of those reported): its state is one the swarm vouched for. Reports of a round come over
        the next rounds' statements (a member whose training side lags reports an older round), so they are kept
        for a few rounds: a node in step does not flip between vouched and not from round to round."""
        for peer, st in o.statements.by_peer.items():
            if st.digest and peer in members:
                self._reports.setdefault(st.digest_round, {})[peer] = st.digest
        for d in [d for d in self._reports if d < o.round - 8]:
            del self._reports[d]
        for d in sorted(self._reports, reverse=True):
            votes = self._reports[d]
            mine = votes.get(self.me)
            if mine is None or len(votes) < 2:
                continue
            agree = sum(v == mine for v in votes.values())
            return d >= self._synced_round and agree >= 2 and 2 * agree > len(votes)
        return len(members) == 1  # alone: nobody to disagree

    def _resync(self, min_round: int, sources: list[bytes] | None = None, members: set[bytes] | None = None) -> None:
        """Download the parameters again: from ``sources`` (the majority's holders), else from any peer; with
        ``members`` (the round's other members), vouched for by two of them where there are two."""
        peers = [PeerRecord(peer_b58(p), [], False, 0, NodeState.TRAINING.label)
                 for p in (sources or []) if p != self.me]
        if not peers:
            peers = self.peer.peers_of(self.run_id)
        begun = time.monotonic()
        self.driver.downloading(True)
        try:
            got = download(self.peer, self.replica, peers, min_round, self.run_config, self.run_id, members=members)
        except JoinError as exc:
            log.warning("resync failed: %s", exc)
            return
        finally:
            self.driver.downloading(False)
        self.stats.synced(got.round, got.source, time.monotonic() - begun, sum(self.replica.sizes()))
        self._synced_round = got.round
        self.driver.set_digest(self.replica.round, self.replica.digest())

    def _catch_up(self, swarm_round: int) -> None:
        """Out of step with the swarm: download a state at least as new as the swarm's round and continue from there
        (at most one try every few seconds)."""
        now = time.monotonic()
        if now - self._last_catch_up < self.limits.catch_up_interval:
            return
        self._last_catch_up = now
        log.warning("round %d: the swarm is at round %d and this node is out of step: downloading its state",
                    self.replica.round, swarm_round)
        begun = time.monotonic()
        self.driver.downloading(True)
        try:
            got = download(self.peer, self.replica, self.peer.peers_of(self.run_id), swarm_round, self.run_config,
                           self.run_id, on_header=self._follow_from)
        except JoinError as exc:
            log.warning("catching up failed: %s", exc)
            return
        finally:
            self.driver.downloading(False)
        self._follow(got)
        self.stats.synced(got.round, got.source, time.monotonic() - begun, sum(self.replica.sizes()))
        self._synced_round = got.round
        self.driver.set_digest(self.replica.round, self.replica.digest())

    async def _follow_from(self, got: Downloaded) -> None:
        """A transfer of the swarm's state of round ``got.round`` has begun (network thread): the round loop follows
        the rounds from there without asking to join, and their outcomes wait in its queue until the parameters are
        in (however many rounds the transfer takes)."""
        self._following = (got.source, got.round)
        if not self._running:
            await self.driver.start(got.round, got.members, False, got.standing, listening=True)
            self._running = True
        else:
            self._epoch = self.driver.rejoin(got.round, got.members, got.standing, listening=True)

    def _follow(self, got: Downloaded) -> None:
        """After a download: make sure the round loop follows from the installed state's round (its header steered
        it already, unless another source's header was the last one read)."""
        if self._following != (got.source, got.round):
            self.peer.host.call(self._follow_from(got))

    def _withdraw(self) -> float:
        """Take back a hand-over no round has taken yet and put it back into the momentum; its sample weight."""
        h = self._handoff
        if h is None or h.taken.is_set() or not self.driver.withdraw(h):
            return 0.0
        self.restore(h.contribution)
        self._handoff = None
        return h.contribution.samples

    def _set_round_lr(self, round: int) -> None:
        """Step the scheduler (if one was given) until its epoch is ``round``: every node applies round r with the
        same lr, however late it joined."""
        if self.scheduler is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns when a scheduler steps before the optimizer's first step
            while self.scheduler.last_epoch < round:
                self.scheduler.step()

    # -- serving peers and the operator ---------------------------------------------------------------------------
    async def _provide_snapshot(self, min_round: int) -> Snapshot | None:
        """A snapshot for a peer: the parameters (one copy per round, shared), the round's members, and the
        statements in which members signed their digest for that round (the joiner counts them)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.limits.snapshot_wait  # one wait in all: the requester allows this much
        snap = await loop.run_in_executor(None, self.replica.snapshot, min_round, self.limits.snapshot_wait)
        if snap is None:
            return None
        while self.driver.round <= snap.round + 2 and time.monotonic() < deadline and not self.driver.finished.is_set():
            # the statements that vouch for the snapshot's round come with that round's results, and, from members
            # that apply a little later, with the next two
            await asyncio.sleep(0.05)
        members = self.driver.members.get(snap.round)
        if members is None:
            return None
        vouching: dict[bytes, object] = {}
        for r in (snap.round, snap.round + 1, snap.round + 2):
            statements = self.driver.statements.get(r)
            if statements is None:
                continue
            for peer, st in statements.by_peer.items():
                if st.digest_round == snap.round and peer not in vouching:
                    vouching[peer] = statements.signed[peer]
        standing = self.driver.standing_at.get(snap.round)
        if standing is None:
            return None
        return Snapshot(snap.round, snap.digest, list(members), snap.tensors, canonical(self.run_config),
                        list(vouching.values()), standing)

    def _resume(self) -> int | None:
        folder = self.swarm_config.service.checkpoint_dir
        if not folder:
            return None
        stale = checkpoint.clean(folder)
        if stale:
            log.warning("removed %d temporary checkpoint files that an interrupted write left in %s", stale, folder)
        state = checkpoint.load_latest(folder)
        if state is None:
            return None
        if state["run_id"] != self.run_id:
            raise JoinError(f"checkpoint {state['path']} belongs to run {state['run_id']}, not {self.run_id}")
        if len(state["params"]) != len(self.replica.params):
            raise JoinError(f"checkpoint {state['path']} holds {len(state['params'])} tensors, the model "
                            f"{len(self.replica.params)}")
        with torch.no_grad(), self.replica.writing():
            for p, saved in zip(self.replica.params, state["params"]):
                p.copy_(saved.to(p.device))
        self.load_state_dict(state["optimizer"])
        self.resumed = state.get("extra")
        return self.replica.round

    def _checkpoint(self) -> tuple[str, int]:
        folder = self.swarm_config.service.checkpoint_dir
        after = max(0, self.replica.round - 1)
        if not folder:
            return "", after
        service = self.swarm_config.service
        try:
            path = checkpoint.save(folder, {
                "round": self.replica.round, "run_id": self.run_id, "run_config": canonical(self.run_config),
                "params": [p.detach().cpu() for p in self.replica.params], "optimizer": self.state_dict(),
                "extra": self._extra_state() if self._extra_state is not None else None,
            }, matched=self._digest_matched, keep=service.keep_checkpoints)
        except (OSError, RuntimeError) as exc:  # torch's archive writer turns a full disk into a RuntimeError
            # a full disk or a folder gone read-only must not stop training: say so, count it, go on
            log.error("checkpoint into %s failed (%s); training goes on without it", folder, exc)
            self.stats.metrics.checkpoint_failures.inc()
            self.reporter.event("checkpoint_failed", round=after, error=str(exc))
            return "", after
        self._checkpointed = self.replica.round
        self.stats.checkpointed(str(path), after)
        return str(path), after

    def _status(self) -> cpb.StatusReply:
        return self.stats.status(self.run_id, self.peer.peer_id_b58, self.peer.maddrs, self.replica.round,
                                 str(self.device))

    def _peers_known(self, n: int) -> None:
        self.stats.peers_known = n
        self.stats.metrics.peers_known.set(n)

    def _set_state(self, state: NodeState) -> None:
        if self.stats is None or state is self.stats.state:
            return
        self.stats.state = state
        if self.control is not None:
            self.control.set_state(state)

    def _close(self) -> None:
        """Release what this optimizer started (its DHT records, round loop, servers, and its own peer)."""
        if self._running:
            self.announcer.stop(left=True)
        if getattr(self, "driver", None) is not None and self.peer is not None and not self.peer.host.loop.is_closed():
            try:
                self.peer.host.call(self.driver.stop(), timeout=self.limits.leave_timeout)
            except Exception as exc:
                log.debug("stopping the round loop: %r", exc)
        if self.control is not None:
            self.control.stop()
            self.control = None
        registry.unregister(self._registered)
        self._registered = None
        if self.stats is not None:
            self.stats.metrics.close()
        if self._own_peer and self.peer is not None:
            self.peer.close()
