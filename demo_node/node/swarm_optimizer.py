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
the parameters), :class:`Replica` (parameters, round, digest, snapshots), :class:`StateSync` (downloads, the digest
vote, catching up, snapshots for others), :class:`Checkpoints`, :class:`NodeStats` (what the operator sees),
:class:`ServiceSurfaces` (control API, metrics), :class:`SafePoints` (requests served between rounds),
:class:`Announcer` (DHT records).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Callable, Iterable, Mapping

import torch

from demo_node.core.optimizer import DeMo
from demo_node.net.host import peer_from_b58
from demo_node.node.announcer import Announcer
from demo_node.node.applier import RoundApplier
from demo_node.node.checkpointing import Checkpoints
from demo_node.node.direct_paths import DirectPaths
from demo_node.node.config import SwarmConfig
from demo_node.node.control import Controls
from demo_node.node.events import Reporter
from demo_node.node.following import RoundFollower
from demo_node.node.joining import JoinError, define_run, refuse_other_runs, settle_run
from demo_node.node.peer import Peer
from demo_node.node.replica import Replica
from demo_node.node.safepoints import SafePoints
from demo_node.node.service import ServiceSurfaces
from demo_node.node.states import NodeState
from demo_node.node.stats import NodeStats
from demo_node.node.sync import StateSync
from demo_node.run_identity import canonical
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.driver import Handoff, RoundDriver, RunSettings
from demo_node.limits import LIMITS, Limits
from demo_node.swarm.plan import Member
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.state_sync import StateServer
from demo_node.version import __version__
from demo_node.wire.codec import encoded_size
from demo_node.wire.proto import demo_node_control_pb2 as cpb

log = logging.getLogger(__name__)
STATE_FORMAT = 1
"""Version of the ``swarm`` entry of :meth:`SwarmOptimizer.state_dict`."""

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
        self.stats: NodeStats | None = None
        self.service: ServiceSurfaces | None = None
        self.sync: StateSync | None = None
        self._joined = self._left = False
        self._handoff: Handoff | None = None
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
        peer = self.peer
        self.stats = NodeStats(self.reporter, peer.accounting, self.counters, lambda: dict(records.rejected),
                               lambda: {"reachability": peer.reachability.state, "paths": peer.paths,
                                        "owns_shards": not peer.client})
        self.service = ServiceSurfaces(cfg.service, self.stats,
                                       Controls(self._status, self.safepoints.request_checkpoint, self.request_leave))
        self.service.start(self.peer.peer_id_b58)
        self.run_config = define_run(cfg, self.replica.params, run_config or {})
        refuse_other_runs(self.peer.greeted(), cfg.run.run_name, cfg.run.run_id)
        self.run_id = settle_run(self.peer.runs(), self.run_config, cfg.run.run_id)
        self.peer.learn_reachability([peer_from_b58(p.peer_b58) for p in self.peer.peers_of(self.run_id)])
        self.peer.identify(canonical(self.run_config), lambda: self.stats.state, lambda: self.replica.round)
        self.reporter.bind(self.run_id, self.peer.peer_id_b58, lambda: max(0, self.replica.round - 1))
        self.service.register(self.peer.peer_id_b58, self.run_id, cfg.network.identity)
        self.scheduler = scheduler(self) if scheduler is not None else None
        run = RunSettings(run_id=self.run_id, values=cfg.optimizer.values, aggregation=cfg.optimizer.aggregation,
                          defense=cfg.defense, client=self.peer.client, device=self.device)
        self.driver = RoundDriver(self.peer.transport, self.layout, self.me, run, cfg.round, self.counters, self.limits)
        self.sync = StateSync(self.peer, self.replica, self.driver, self.stats, self.run_config, self.run_id,
                              self.limits)
        service = cfg.service
        self.checkpoints = Checkpoints(service.checkpoint_dir, service.keep_checkpoints, service.checkpoint_every,
                                       self.replica, self.run_id, self.run_config, self.state_dict,
                                       self.load_state_dict, self._extra_state, self.stats, self.reporter)
        signs = ShardSigns(self.layout, cfg.optimizer.aggregation, self.device, robust=cfg.defense.robust_aggregation,
                           max_sample_weight=cfg.defense.max_sample_weight)
        self.applier = RoundApplier(self, self.replica, signs, self.counters, self.run_id, self.me, self._set_round_lr)
        books = self.driver.books
        self.direct_paths = DirectPaths(self.peer, lambda: [m.peer for m in books.members.get(books.round, [])],
                                        self._set_owner)
        self.announcer = Announcer(self.peer, self.run_id, canonical(self.run_config), lambda: self.stats.state,
                                   lambda: self.replica.round, self._peers_known, self.limits,
                                   on_beat=self.direct_paths.beat)
        self.follower = RoundFollower(self.driver, self.replica, self.applier, self.sync, self.checkpoints, self.stats,
                                      self.reporter, self.peer, self._set_state)
        m = self.stats.metrics
        m.info.info({"version": __version__, "run_id": self.run_id, "peer_id": self.peer.peer_id_b58,
                     "device": str(self.device)})
        payload = encoded_size(self.layout, cfg.optimizer.values, run_id=self.run_id)
        m.compression.set(4 * self.layout.num_params / payload)

    @property
    def control_port(self) -> int:
        return self.service.control_port if self.service is not None else 0

    @property
    def metrics_port(self) -> int:
        return self.service.metrics_port if self.service is not None else 0

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
        resumed, self.resumed = self.checkpoints.resume()
        sources = self.peer.peers_of(self.run_id)
        self.peer.host.call(StateServer(self.peer.transport, self.sync.provide, self.limits).start())
        self.reporter.event("started", maddrs=self.peer.maddrs, p2pd_pid=self.peer.p2pd_pid, device=str(self.device),
                            reachability=self.peer.reachability.state, reachability_how=self.peer.reachability.how,
                            owns_shards=not self.peer.client,
                            metrics_port=self.metrics_port, control_port=self.control_port,
                            control=self.service.control_address, params=self.layout.num_params,
                            resumed_round=resumed, peers_found=len(sources), run_config=self.run_config)
        client = self.peer.client
        if sources:
            self._set_state(NodeState.JOINING)
            self.sync.first(sources, lambda: self.leave_requested)
        else:
            if client:
                raise JoinError(f"a node that owns no shard ({self.peer.reachability.how}) cannot start a swarm: give "
                                "the peers of a running one")
            self.follower.member_next = True
            self.driver.set_digest(self.replica.round, self.replica.digest())
            self.peer.host.call(self.driver.start(self.replica.round, [Member(self.me, client)], True))
            self.sync.running = True
        self._set_state(NodeState.TRAINING if self.follower.member_next else NodeState.JOINING)
        self.announcer.start()
        while not self.follower.member_next:
            if self.driver.finished.is_set() or self.leave_requested:
                break
            self._apply_ready(block=0.1)
        self.stats.reset_clock()
        return self

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
        self.safepoints.serve(self._checkpoint_now)
        self.stats.step_returned()
        return result

    def report_eval(self, held_out_loss: float, **figures) -> None:
        """Record a held-out loss the caller measured (metrics, status, an "eval" line with ``figures`` too)."""
        self.stats.evaluated(held_out_loss, self.replica.round - 1, **figures)

    def leave(self) -> None:
        """Finish the round in flight, checkpoint, mark this node left and stop (a second call does nothing)."""
        if self._left:
            return
        running = self.sync is not None and self.sync.running
        if running and not self.driver.finished.is_set():
            self._set_state(NodeState.LEAVING)
            self.safepoints.request_leave()
            self._withdraw()
            self.driver.request_leave()
            while not (self.driver.finished.is_set() and self.driver.outcomes.empty()):
                self._apply_ready(block=0.1)
            self._withdraw()
        if running:
            self.checkpoints.save(self.sync.matched, again=False)
        self._set_state(NodeState.LEFT)
        self._close()
        self._left = True
        if running:
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
        self.follower.apply_ready(until, block, lambda: self.leave_requested)

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

    def _checkpoint_now(self) -> tuple[str, int]:
        return self.checkpoints.save(self.sync.matched)

    # -- serving the operator -------------------------------------------------------------------------------------
    def _status(self) -> cpb.StatusReply:
        return self.stats.status(self.run_id, self.peer.peer_id_b58, self.peer.maddrs, self.replica.round,
                                 str(self.device))

    def _set_owner(self, owns: bool, why: str) -> None:
        """A private member found direct paths to every member (or lost one): its statements say so from the next
        round on (called on the network's loop, the round driver's own)."""
        self.peer.direct_owner = owns
        self.driver.run.client = self.peer.client
        self.reporter.event("role", owns_shards=owns, why=why)

    def _peers_known(self, n: int) -> None:
        self.stats.peers_known = n
        self.stats.metrics.peers_known.set(n)

    def _set_state(self, state: NodeState) -> None:
        if self.stats is None or state is self.stats.state:
            return
        self.stats.state = state
        if self.service is not None:
            self.service.set_state(state)

    def _close(self) -> None:
        """Release what this optimizer started (its DHT records, round loop, servers, and its own peer)."""
        if self.sync is not None and self.sync.running:
            self.announcer.stop(left=True)
        if getattr(self, "driver", None) is not None and self.peer is not None and not self.peer.host.loop.is_closed():
            try:
                self.peer.host.call(self.driver.stop(), timeout=self.limits.leave_timeout)
            except Exception as exc:
                log.debug("stopping the round loop: %r", exc)
        if self.service is not None:
            self.service.close()
        if self._own_peer and self.peer is not None:
            self.peer.close()
