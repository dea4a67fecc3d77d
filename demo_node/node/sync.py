"""How this node's parameters stay the swarm's: the first download when it joins, following the rounds from a
transfer's header, the digest vote after every round (a node whose digest differs from most members' downloads
theirs), catching up when it is out of step, and the snapshots it serves to others. Every download goes one way
(:meth:`StateSync.download`): while it runs the round loop does not wait for this node's contribution."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Mapping

from demo_node.net.host import peer_b58
from demo_node.node.joining import Downloaded, JoinError, download
from demo_node.node.peer import Peer
from demo_node.node.replica import Replica
from demo_node.node.states import NodeState
from demo_node.node.stats import NodeStats
from demo_node.run_identity import canonical
from demo_node.swarm.discovery import PeerRecord
from demo_node.swarm.driver import RoundDriver
from demo_node.limits import Limits
from demo_node.swarm.membership import digest_majority, majority_decides
from demo_node.swarm.outcome import RoundOutcome
from demo_node.swarm.state_sync import Snapshot

log = logging.getLogger(__name__)


class StateSync:
    def __init__(self, peer: Peer, replica: Replica, driver: RoundDriver, stats: NodeStats,
                 run_config: Mapping[str, Any], run_id: str, limits: Limits):
        self.peer, self.replica, self.driver, self.stats = peer, replica, driver, stats
        self.run_config, self.run_id, self.limits = run_config, run_id, limits
        self.running = False
        """The round loop was started."""
        self.epoch = 0
        """Outcomes of an earlier epoch were produced before the round loop jumped to a downloaded state: ignored."""
        self.synced_round = 0
        """The round of the last downloaded state (digests this node signed before it describe replaced parameters)."""
        self.matched = False
        """The swarm vouched for this node's recent state (its checkpoints are then marked as vouched for)."""
        self._following: tuple[str, int] | None = None
        """The source and round of the state transfer the round loop follows from (see follow_from)."""
        self._reports: dict[int, dict[bytes, bytes]] = {}
        """Digest round -> member -> the digest it reported for it, over the last rounds' statements."""
        self._last_catch_up = float("-inf")
        self._member_since: dict[bytes, int] = {}
        """Member -> the first round of its present membership that this node saw (who joined later, of two)."""

    # -- downloads -------------------------------------------------------------------------------------------------
    def download(self, peers: list[PeerRecord], min_round: int, *, members: set[bytes] | None = None,
                 follow: bool = False) -> Downloaded:
        """Download and install a state of round ``min_round`` or later from the first of ``peers`` that serves one
        vouched for (``members``: who may vouch, when this node knows); with ``follow``, the round loop follows the
        rounds from the transfer's header on. JoinError if no peer served one."""
        begun = time.monotonic()
        self.driver.downloading(True)
        try:
            got = download(self.peer, self.replica, peers, min_round, self.run_config, self.run_id, members=members,
                           on_header=self.follow_from if follow else None)
        finally:
            self.driver.downloading(False)
        if follow and self._following != (got.source, got.round):
            self.peer.host.call(self.follow_from(got))  # another source's header was the last one read
        self.stats.synced(got.round, got.source, time.monotonic() - begun, sum(self.replica.sizes()))
        self.synced_round = got.round
        self.driver.set_digest(self.replica.round, self.replica.digest())
        return got

    def first(self, sources: list[PeerRecord], leaving) -> Downloaded:
        """The swarm's parameters when joining, trying again for ``join_patience`` seconds: a transfer that a busy
        or restarting peer cuts off is no reason to give up joining (the sources are asked again, the DHT's newest
        first). ``leaving()``: stop trying."""
        end = time.monotonic() + self.limits.join_patience
        while True:
            try:
                return self.download(sources, 0, follow=True)
            except JoinError as exc:
                if time.monotonic() >= end or leaving():
                    raise
                log.warning("%s: trying again", exc)
                time.sleep(self.limits.catch_up_interval)
                sources = self.peer.peers_of(self.run_id) or sources

    def resync(self, min_round: int, sources: list[bytes] | None = None, members: set[bytes] | None = None) -> None:
        """Download the parameters again: from ``sources`` (the majority's holders), else from any peer; with
        ``members`` (the round's other members), vouched for by two of them where there are two."""
        peers = [PeerRecord(peer_b58(p), [], False, 0, NodeState.TRAINING.label)
                 for p in (sources or []) if p != self.peer.peer_id]
        try:
            self.download(peers or self.peer.peers_of(self.run_id), min_round, members=members)
        except JoinError as exc:
            log.warning("resync failed: %s", exc)

    def catch_up(self, swarm_round: int) -> None:
        """Out of step with the swarm: download a state at least as new as the swarm's round and continue from there
        (at most one try every few seconds)."""
        now = time.monotonic()
        if now - self._last_catch_up < self.limits.catch_up_interval:
            return
        self._last_catch_up = now
        log.warning("round %d: the swarm is at round %d and this node is out of step: downloading its state",
                    self.replica.round, swarm_round)
        try:
            self.download(self.peer.peers_of(self.run_id), swarm_round, follow=True)
        except JoinError as exc:
            log.warning("catching up failed: %s", exc)

    async def follow_from(self, got: Downloaded) -> None:
        """A transfer of the swarm's state of round ``got.round`` has begun (network thread): the round loop follows
        the rounds from there without asking to join, and their outcomes wait in its queue until the parameters are
        in (however many rounds the transfer takes)."""
        self._following = (got.source, got.round)
        if not self.running:
            await self.driver.start(got.round, got.members, False, got.standing, listening=True)
            self.running = True
        else:
            self.epoch = self.driver.rejoin(got.round, got.members, got.standing, listening=True)

    # -- the digest vote -------------------------------------------------------------------------------------------
    def check_digest(self, o: RoundOutcome) -> None:
        """If the digest this node signed differs from the one most members signed for the same round, download the
        parameters of those members. Demoted members (proven liars) have no vote: with them out, two honest members
        that a failure split are two, and one takes the other's state."""
        me = self.peer.peer_id
        present = {m.peer for m in o.plan.members}
        self._member_since = {p: self._member_since.get(p, o.round) for p in present}
        reported = o.statements.by_peer.get(me)
        if reported is None or not reported.digest or reported.digest_round < self.synced_round:
            return  # nothing said, or said of parameters that a download has replaced since
        members = {m.peer for m in o.plan.members if m.peer not in o.demoted or m.peer == me}
        self.matched = self._agreed(o, members)
        majority = digest_majority(o.statements, members, reported.digest_round)
        if majority is None or reported.digest == majority[0] or not majority_decides(majority[1], members, me,
                                                                                         self._member_since):
            return
        self.stats.diverged(o.round, reported.digest_round, reported.digest, majority[0], len(majority[1]))
        self.resync(self.replica.round, sources=majority[1], members=members - {me})

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
            mine = votes.get(self.peer.peer_id)
            if mine is None or len(votes) < 2:
                continue
            agree = sum(v == mine for v in votes.values())
            return d >= self.synced_round and agree >= 2 and 2 * agree > len(votes)
        return len(members) == 1  # alone: nobody to disagree

    # -- serving others --------------------------------------------------------------------------------------------
    async def provide(self, min_round: int) -> Snapshot | None:
        """A snapshot for a peer: the parameters (one copy per round, shared), the round's members and books of who
        may own, and the statements in which members signed their digest for that round (the joiner counts them)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.limits.snapshot_wait  # one wait in all: the requester allows this much
        snap = await loop.run_in_executor(None, self.replica.snapshot, min_round, self.limits.snapshot_wait)
        if snap is None:
            return None
        d = self.driver
        while d.round <= snap.round + 2 and time.monotonic() < deadline and not d.finished.is_set():
            # the statements that vouch for the snapshot's round come with that round's results, and, from members
            # that apply a little later, with the next two
            await asyncio.sleep(0.05)
        books = d.books
        members, standing = books.members.get(snap.round), books.standing_at.get(snap.round)
        if members is None or standing is None:
            return None
        return Snapshot(snap.round, snap.digest, list(members), snap.tensors, canonical(self.run_config),
                        books.vouching(snap.round), standing)
