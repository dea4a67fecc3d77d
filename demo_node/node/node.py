"""A demo-node: joins or founds a run, trains, exchanges every round with its peers, checkpoints, leaves cleanly.

Two threads: the network thread runs the libp2p peer, the DHT, the round loop and the owner's shard work; the
training thread (the caller's) computes gradients, applies round outcomes in order, answers requests for snapshots
at safe points, and writes checkpoints. They meet in three places: the contribution hand-over, the queue of round
outcomes, and the snapshot requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

import torch

from demo_node import __version__
from demo_node.config import Config
from demo_node.core.aggregate import aggregate
from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.update import SignComputer
from demo_node.net.accounting import Accounting
from demo_node.net.host import Host, HostConfig, peer_b58, peer_from_b58
from demo_node.net.transport import Transport
from demo_node.node import checkpoint
from demo_node.node.control import ControlServer
from demo_node.node.events import Reporter
from demo_node.node.joining import GreetedPeer, NodeError, greet, hello, resolve_run
from demo_node.node.metrics import NodeMetrics
from demo_node.node.trainer import ComputeStats, Trainer
from demo_node.run_identity import canonical, differences, run_id
from demo_node.swarm.discovery import PeerRecord, find_peers, find_runs, publish_peer, publish_run
from demo_node.swarm.driver import DriverConfig, Handoff, RoundDriver, majority_digest
from demo_node.swarm.outcome import RoundOutcome
from demo_node.swarm.plan import Member
from demo_node.swarm.state_sync import Snapshot, StateServer, fetch_state
from demo_node.wire.codec import encoded_size
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_control_pb2 as cpb
from demo_node.wire.signs import pack_signs

log = logging.getLogger(__name__)
HEARTBEAT = 5.0


@dataclass
class SnapshotRequest:
    min_round: int
    future: concurrent.futures.Future
    since: float


class Node:
    def __init__(self, cfg: Config, reporter: Reporter | None = None):
        self.cfg = cfg
        self.reporter = reporter or Reporter(cfg.log_format)
        self.started = time.monotonic()
        self.host: Host | None = None
        self.accounting = Accounting()
        self.rejects: dict[str, int] = {}
        self._snapshot_requests: "queue.Queue[SnapshotRequest]" = queue.Queue()
        self._waiting_snapshots: list[SnapshotRequest] = []
        self._stop = threading.Event()
        self._leaving = False
        self._heartbeat: concurrent.futures.Future | None = None
        self._owner_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="demo-node-owner")
        self.rounds_applied = 0
        self.synced_at: float | None = None
        self.joined_at: float | None = None
        self.last_loss = float("nan")
        self.held_out_loss = float("nan")
        self.tokens_per_s = 0.0
        self.last_digest = b""
        self.last_members = 0
        self.peers_known = 0
        self.last_checkpoint_time = time.time()
        self._checkpoint_requests: "queue.Queue[concurrent.futures.Future]" = queue.Queue()
        self.metrics = NodeMetrics(self.accounting, lambda: self.last_checkpoint_time)
        self.control: ControlServer | None = None
        self.metrics_port = self.control_port = 0
        self._state = "starting"
        self.run_id = ""

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value != self._state:
            self._state = value
            if self.control is not None:
                self.control.set_state(value)

    # -- start -------------------------------------------------------------------------------------------------
    def start(self) -> "Node":
        cfg = self.cfg
        if cfg.control:
            self.control = ControlServer(self)
            self.control_port = self.control.start(cfg.control)
        if cfg.metrics:
            self.metrics_port = self.metrics.serve(cfg.metrics)
        self.host = Host(HostConfig(initial_peers=list(cfg.peers), listen=list(cfg.listen),
                                    announce=list(cfg.announce), identity_path=cfg.identity,
                                    client_mode=cfg.client_mode)).start()
        self.me = self.host.peer_id
        self.transport = Transport(self.host, self.accounting)
        self.host.call(self.transport.serve("hello", self._on_hello))
        greeted = greet(self.host, self.transport, list(cfg.peers))
        self.cfg = cfg = self._resolve_run(cfg, greeted)
        self.run_id = run_id(cfg.run_config())
        self.reporter.run_id, self.reporter.peer = self.run_id, self.host.peer_id_b58
        self.trainer = Trainer(cfg, self.me)
        layout = self.trainer.layout
        self.metrics.info.info({"version": __version__, "run_id": self.run_id, "peer_id": self.host.peer_id_b58,
                                "device": str(self.trainer.device)})
        self.metrics.compression.set(4 * layout.num_params / encoded_size(layout, cfg.values, run_id=self.run_id))
        resumed = self._resume()
        self._owner_signs_computer = SignComputer(self.trainer.layout, self.trainer.device)
        self.driver = RoundDriver(
            self.transport, self.trainer.layout, self.me,
            DriverConfig(run_id=self.run_id, deadline=cfg.deadline, adaptive_deadline=cfg.adaptive_deadline,
                         exchange=cfg.exchange, values=cfg.values, client=cfg.client_mode),
            compute_signs=self._owner_signs, on_reject=self._count_reject,
            on_late=lambda: self.metrics.late.labels("peers").inc(),
        )
        self.host.call(StateServer(self.transport, self._provide_snapshot).start())
        peers = [p for p in self.host.call(find_peers(self.host.dht, self.run_id)) if p.peer_b58 != self.host.peer_id_b58]
        known = {p.peer_b58 for p in peers}
        peers += [p for p in greeted if p.peer_b58 not in known and p.state != "starting" and
                  json.loads(p.run_config or "null") is not None and run_id(json.loads(p.run_config)) == self.run_id]
        self.reporter.event("started", maddrs=self.host.maddrs, p2pd_pid=self.host.p2pd_pid, device=str(self.trainer.device),
                            metrics_port=self.metrics_port, control_port=self.control_port,
                            params=self.trainer.layout.num_params, resumed_round=resumed, peers_found=len(peers),
                            run_config=json.loads(canonical(cfg.run_config())))
        if peers:
            for p in peers:
                self.transport.remember(peer_from_b58(p.peer_b58), p.maddrs)
            snap = self._sync(peers, min_round=0)
            round, members, member = snap.next_round, snap.members, False
        else:
            round, members, member = self.trainer.round, [Member(self.me, cfg.client_mode)], True
            if cfg.client_mode:
                raise NodeError("a client-mode node cannot start a swarm: give --peers of a running one")
        self.driver.set_digest(self.trainer.round, self.trainer.digest())
        self.host.call(self.driver.start(round, members, member))
        self.state = "training" if member else "joining"
        self._heartbeat = self.host.submit(self._beat())
        return self

    async def _on_hello(self, stream) -> None:
        await stream.recv(limit=1 << 10)
        started = self.state != "starting"
        await stream.send(hello(self.state, self.cfg, started, self.host.maddrs if self.host else [],
                                self.trainer.round if started else 0))

    def _resolve_run(self, cfg: Config, greeted: list[GreetedPeer]) -> Config:
        """Settle the run's config against the runs the DHT and the greeted peers announce."""
        runs = self.host.call(find_runs(self.host.dht))
        for g in greeted:
            if g.run_config:
                theirs = json.loads(g.run_config)
                runs.setdefault(run_id(theirs), theirs)
        return resolve_run(cfg, runs)

    def _resume(self) -> int | None:
        if not self.cfg.checkpoint_dir:
            return None
        state = checkpoint.load_latest(self.cfg.checkpoint_dir)
        if state is None:
            return None
        if state["run_id"] != self.run_id:
            raise NodeError(f"checkpoint {state['path']} belongs to run {state['run_id']}, not {self.run_id}")
        self.trainer.model.load_state_dict(state["model"])
        self.trainer.opt.load_state_dict(state["optimizer"])
        self.trainer.batches.restore(state["data_rng"])
        self.trainer.round = int(state["round"])
        return self.trainer.round

    def _sync(self, peers: list[PeerRecord], min_round: int) -> Snapshot:
        """Download the parameters from a peer (digest-checked) and install them."""
        begun = time.monotonic()
        errors = []
        for p in peers:
            if p.client:
                continue
            peer = peer_from_b58(p.peer_b58)
            try:
                snap = self.host.call(fetch_state(self.transport, peer, min_round, timeout=60.0), timeout=600)
            except Exception as exc:
                errors.append(f"{p.peer_b58}: {exc!r}")
                continue
            theirs = json.loads(snap.run_config)
            if differences(self.cfg.run_config(), theirs):
                errors.append(f"{p.peer_b58}: another run config")
                continue
            self.trainer.install(snap.tensors)
            if self.trainer.digest() != snap.digest:
                errors.append(f"{p.peer_b58}: parameters do not match their digest")
                continue
            self.trainer.round = snap.next_round
            self.synced_at = time.monotonic()
            self.metrics.state_syncs.inc()
            self.reporter.event("synced", round=snap.next_round, source=p.peer_b58, seconds=round(self.synced_at - begun, 3),
                                bytes=sum(len(t) for t in snap.tensors))
            return snap
        raise NodeError("could not get the parameters from any peer: " + "; ".join(errors))

    # -- network-thread callbacks ------------------------------------------------------------------------------
    async def _owner_signs(self, contributions: list[Contribution], ranges: dict[int, tuple[int, int]]):
        return await asyncio.get_running_loop().run_in_executor(self._owner_pool, self._owner_signs_sync,
                                                                contributions, ranges)

    def _owner_signs_sync(self, contributions: list[Contribution], ranges: dict[int, tuple[int, int]]):
        device = self.trainer.device
        moved = [Contribution({b: BucketPart(p.start, p.indices.to(device), p.values.to(device))
                               for b, p in c.parts.items()}, c.samples) for c in contributions]
        sizes = {b.index: b.block_size for b in self.trainer.layout.buckets}
        agg = aggregate(moved, self.cfg.aggregation, sizes)
        with torch.no_grad():
            return pack_signs(self._owner_signs_computer.signs(agg), ranges)

    def _count_reject(self, reason: str) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + 1
        self.metrics.rejected.labels(reason).inc()

    async def _provide_snapshot(self, min_round: int) -> Snapshot | None:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._snapshot_requests.put(SnapshotRequest(min_round, fut, time.monotonic()))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout=120)
        except asyncio.TimeoutError:
            return None

    async def _beat(self) -> None:
        host = self.host
        assert host is not None
        while True:
            try:
                await publish_run(host.dht, self.run_id, canonical(self.cfg.run_config()))
                await publish_peer(host.dht, self.run_id, PeerRecord(host.peer_id_b58, host.maddrs, self.cfg.client_mode,
                                                                      self.driver.round, self.state))
                self.peers_known = len(await find_peers(host.dht, self.run_id))
                self.metrics.peers_known.set(self.peers_known)
            except Exception as exc:
                log.warning("DHT heartbeat failed: %r", exc)
            await asyncio.sleep(HEARTBEAT)

    # -- the training thread -----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Leave at the next round: finish it, checkpoint, leave the DHT (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> int:
        handoff: Handoff | None = None
        last_event = time.monotonic()
        tokens = pending_samples = 0
        while True:
            if self._stop.is_set() and not self._leaving:
                self._leaving = True
                self.state = "leaving"
                self.driver.request_leave()
            if self.driver.finished.is_set() and self.driver.outcomes.empty():
                break
            if handoff is not None and not self.cfg.overlap:
                self._drain(until=handoff)
                handoff = None
            else:
                self._drain()
            if self._leaving or not self.driver.member:
                self._drain(block=0.1)
                continue
            if self.cfg.max_rounds and self.rounds_applied >= self.cfg.max_rounds:
                self.request_stop()
                continue
            stats = self._compute()
            tokens += stats.tokens
            pending_samples += stats.samples
            self.last_loss = stats.loss
            self._drain()
            if handoff is not None and not handoff.taken.is_set():
                # overlapped: the last contribution still waits for its round, so keep accumulating gradients
                # (handing over another now would replace it, and its signal, already out of the momentum, be lost)
                continue
            handoff = self.driver.hand_over(self.trainer.prepare(pending_samples, self.trainer.round))
            pending_samples = 0
            now = time.monotonic()
            self.tokens_per_s = tokens / max(1e-9, now - last_event)
            self.metrics.tokens_per_second.set(self.tokens_per_s)
            last_event, tokens = now, 0
        self._finish(handoff)
        return 0

    def _compute(self) -> ComputeStats:
        cfg, t = self.cfg, self.trainer
        begun = time.monotonic()
        losses, samples = [], 0
        while True:
            loss, n = t.micro_batch()
            losses.append(loss)
            samples += n
            self._serve_snapshots()
            if self._stop.is_set():
                break
            if cfg.compute_seconds > 0:
                if time.monotonic() - begun >= cfg.compute_seconds:
                    break
            elif len(losses) >= cfg.micro_batches:
                break
            if cfg.overlap:
                self._drain()
        stats = ComputeStats(samples, samples * t.context, sum(losses) / len(losses), time.monotonic() - begun)
        self.metrics.compute.observe(stats.seconds)
        self.metrics.tokens.inc(stats.tokens)
        self.metrics.samples.inc(stats.samples)
        return stats

    def _drain(self, until: Handoff | None = None, block: float = 0.0) -> None:
        """Apply the round outcomes that are ready. With ``until``, wait for the outcome that carries that
        hand-over (or for the round loop to end, or for a stop asked before the hand-over was taken); with
        ``block``, wait up to that many seconds for outcomes."""
        deadline = time.monotonic() + block
        while True:
            self._serve_snapshots()
            waiting = until is not None or time.monotonic() < deadline
            try:
                outcome = self.driver.outcomes.get(timeout=0.05) if waiting else self.driver.outcomes.get_nowait()
            except queue.Empty:
                if until is None:
                    if time.monotonic() >= deadline:
                        return
                elif self.driver.finished.is_set() or (self._stop.is_set() and not until.taken.is_set()):
                    return
                continue
            self._apply(outcome)
            if until is not None and outcome.contribution is until.contribution:
                return

    def _apply(self, o: RoundOutcome) -> None:
        t = self.trainer
        if o.round < t.round:
            return  # already in the parameters (they came from a snapshot)
        if o.round > t.round:
            log.warning("round %d outcome while at round %d: resyncing", o.round, t.round)
            self._resync(o.round)
            if o.round < t.round:
                return
        t.set_round_lr(o.round)
        try:
            pieces, skipped = o.sign_pieces(t.opt, self.run_id, self.me)
        except PayloadError as exc:
            self._count_reject(exc.reason)
            log.warning("round %d: a shard result did not decode (%s): skipping the round here", o.round, exc)
            pieces, skipped = [], len(o.shards)
        t.opt.apply_signs(pieces)
        left_out = False
        for part in o.excluded_parts(self.me):
            t.opt.restore(part)
            left_out = True
        t.round = o.round + 1
        self.reporter.round = o.round
        if o.member and self.cfg.fault_after_rounds and self.rounds_applied + 1 == self.cfg.fault_after_rounds:
            self._inject_fault()
        digest = t.digest()
        self.last_digest, self.last_members = digest, len(o.plan.members)
        self.driver.set_digest(t.round, digest)
        m = self.metrics
        m.rounds.inc()
        m.round.set(t.round)
        m.round_duration.observe(o.seconds)
        m.participants.set(len(o.plan.members))
        m.contributors.set(len({i.sender for s in o.shards if s.result is not None for i in s.result.included}))
        m.loss.set(self.last_loss)
        if left_out:
            m.late.labels("own").inc()
        if skipped:
            m.skipped.inc(skipped)
        if o.member:
            self.rounds_applied += 1
            if self.joined_at is None and self.synced_at is not None:
                self.joined_at = time.monotonic()
                self.reporter.event("joined", round=o.round, seconds_since_start=round(self.joined_at - self.started, 3))
        self.state = "training" if o.member else "joining"
        totals = self.accounting.totals()
        self.reporter.event(
            "round", round=o.round, loss=self.last_loss, tokens_per_s=self.tokens_per_s,
            members=len(o.plan.members), owners=len(o.plan.owners), mode=o.plan.mode, round_seconds=round(o.seconds, 3),
            skipped_shards=skipped, left_out=left_out, contributed=o.contribution is not None, member=o.member,
            digest=digest.hex()[:16], bytes_sent=totals["sent"], bytes_received=totals["received"],
            fetched=[s.owner.hex()[:12] for s in o.shards if s.source == "peer"], errors=sorted(set(o.errors.values())),
            rejects=dict(self.rejects),
        )
        if self.cfg.eval_every and o.member and t.round % self.cfg.eval_every == 0:
            self.held_out_loss = t.eval_loss()
            self.metrics.held_out_loss.set(self.held_out_loss)
            self.reporter.event("eval", round=o.round, held_out_loss=self.held_out_loss)
        self._check_digest(o, digest)
        if self.cfg.checkpoint_dir and o.member and t.round % self.cfg.checkpoint_every == 0:
            self._checkpoint()

    def _inject_fault(self) -> None:
        """Fault injection (--fault-after-rounds): a silent corruption of one parameter, as a bad memory bit would make."""
        with torch.no_grad():
            next(self.trainer.model.parameters()).view(-1)[0] += 1.0
        self.reporter.event("fault_injected", round=self.trainer.round - 1)

    def _check_digest(self, o: RoundOutcome, mine: bytes) -> None:
        reported = next((p for p in o.digests if p.peer == self.me), None)
        if reported is None or not reported.digest:
            return
        majority = majority_digest(o.digests, reported.digest_round)
        if majority is None or reported.digest == majority[0]:
            return
        self.metrics.digest_mismatches.inc()
        self.reporter.event("diverged", round=o.round, digest_round=reported.digest_round, mine=reported.digest.hex()[:16],
                            majority=majority[0].hex()[:16], holders=len(majority[1]))
        self._resync(self.trainer.round, sources=majority[1])

    def _resync(self, min_round: int, sources: list[bytes] | None = None) -> None:
        peers = [PeerRecord(peer_b58(p), [], False, 0, "training") for p in (sources or []) if p != self.me]
        if not peers:
            peers = [p for p in self.host.call(find_peers(self.host.dht, self.run_id)) if p.peer_b58 != self.host.peer_id_b58]
        try:
            self._sync(peers, min_round)
        except NodeError as exc:
            log.warning("resync failed: %s", exc)
            return
        self.driver.set_digest(self.trainer.round, self.trainer.digest())

    def _serve_snapshots(self) -> None:
        self._serve_checkpoints()
        while True:
            try:
                self._waiting_snapshots.append(self._snapshot_requests.get_nowait())
            except queue.Empty:
                break
        if not self._waiting_snapshots:
            return
        t = self.trainer
        keep = []
        for req in self._waiting_snapshots:
            if req.future.done():
                continue
            members = self.driver.members.get(t.round)
            if t.round >= req.min_round and members is not None:
                req.future.set_result(Snapshot(t.round, t.digest(), list(members), t.snapshot(),
                                               canonical(self.cfg.run_config())))
            elif time.monotonic() - req.since > 120:
                req.future.set_result(None)
            else:
                keep.append(req)
        self._waiting_snapshots = keep

    def checkpoint_now(self, timeout: float) -> tuple[str, int]:
        """From any thread: have the training thread checkpoint at its next safe point; (path, round)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._checkpoint_requests.put(fut)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError("no safe point within the timeout") from None

    def _serve_checkpoints(self) -> None:
        while True:
            try:
                fut = self._checkpoint_requests.get_nowait()
            except queue.Empty:
                return
            path = self._checkpoint() if self.cfg.checkpoint_dir else ""
            fut.set_result((path, max(0, self.trainer.round - 1)))

    def status(self) -> cpb.StatusReply:
        totals = self.accounting.totals()
        t = getattr(self, "trainer", None)
        return cpb.StatusReply(
            run_id=self.run_id, peer_id=self.host.peer_id_b58 if self.host else "", state=self.state,
            round=t.round if t else 0, members=self.last_members, peers_known=self.peers_known,
            loss=self.last_loss, held_out_loss=self.held_out_loss, bytes_sent=totals["sent"],
            bytes_received=totals["received"], digest=self.last_digest.hex(),
            maddrs=self.host.maddrs if self.host else [], uptime_seconds=time.monotonic() - self.started,
            device=str(t.device) if t else "", version=__version__,
        )

    def _checkpoint(self) -> str:
        t = self.trainer
        path = checkpoint.save(self.cfg.checkpoint_dir, {
            "round": t.round, "run_id": self.run_id, "run_config": canonical(self.cfg.run_config()),
            "model": {k: v.detach().cpu() for k, v in t.model.state_dict().items()},
            "optimizer": t.opt.state_dict(), "data_rng": t.batches.state(),
        })
        self.last_checkpoint_time = time.time()
        self.metrics.checkpoints.inc()
        self.reporter.event("checkpoint", round=t.round - 1, path=str(path))
        return str(path)

    def _finish(self, handoff: Handoff | None) -> None:
        if handoff is not None and not handoff.taken.is_set():
            self.trainer.opt.restore(handoff.contribution)  # never sent: keep its signal in the momentum
        if self.cfg.checkpoint_dir:
            self._checkpoint()
        self.state = "left"
        self.shutdown()
        per_peer_kind = {f"{peer}/{kind}/{direction}": n for (peer, kind, direction), n in self.accounting.snapshot().items()}
        self.reporter.event("left", round=self.trainer.round - 1, rounds=self.rounds_applied, bytes=per_peer_kind)

    def shutdown(self) -> None:
        if self.control is not None:
            self.control.stop()
        self.metrics.close()
        host = self.host
        if host is None or host.loop.is_closed():
            return
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        try:
            host.call(publish_peer(host.dht, self.run_id, PeerRecord(host.peer_id_b58, host.maddrs, self.cfg.client_mode,
                                                                     self.trainer.round, "left")), timeout=10)
        except Exception as exc:
            log.debug("could not mark this peer as left: %r", exc)
        try:
            host.call(self.driver.stop(), timeout=10)
        except Exception:
            pass
        host.shutdown()
        self._owner_pool.shutdown(wait=False)

