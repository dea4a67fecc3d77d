"""The round loop on the network thread: open a round, send this node's contribution to the round's owners, get
every shard's result, and hand the round's outcome to the training side.

The loop never waits for the training side longer than the swarm does: if this node's contribution is not ready
when the other members' contributions have started to arrive (plus a grace), it asks for the results without one
and its contribution goes into a later round. When an owner cannot be reached, the node asks the other members for
that shard's result; a member answers "don't have" only once it has itself given up on the owner, and then never
takes that result from the owner any more, so either some member has it and every node that asks gets it, or
nobody applies it (the shard's blocks are skipped alike).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from google.protobuf.message import DecodeError

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.net.transport import Stream, Transport
from demo_node.swarm.config import RoundConfig
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.limits import LIMITS, Limits
from demo_node.swarm.outcome import RoundOutcome, ShardOutcome, restrict
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.plan import Member, RoundPlan, make_plan
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.codec import encode, encoded_size, max_payload_bytes
from demo_node.wire.errors import refusal_code, refusal_name
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RunSettings:
    """What the round protocol needs to know of the run and of this node's role in it."""

    run_id: str
    values: str
    """The run's value precision (the payload's size decides the exchange mode)."""
    aggregation: str
    """The run's aggregation rule (an owner in sign exchange aggregates)."""
    client: bool = False
    """This node owns no shards."""
    device: torch.device | str = "cpu"
    """Where an owner aggregates and inverts its shard."""


@dataclass
class Handoff:
    contribution: Contribution
    taken: threading.Event = field(default_factory=threading.Event)
    """Set once a round has taken the contribution (from then on it cannot be withdrawn)."""


class RoundDriver:
    def __init__(self, transport: Transport, layout: Layout, me: bytes, run: RunSettings, rounds: RoundConfig,
                 counters: SwarmCounters, limits: Limits = LIMITS):
        self.transport, self.layout, self.me = transport, layout, me
        self.run, self.cfg, self.counters, self.limits = run, rounds, counters, limits
        self.payload_bytes = encoded_size(layout, run.values, run_id=run.run_id)
        self.max_request = 2 * max_payload_bytes(layout) + (1 << 20)
        self.outcomes: "queue.Queue[RoundOutcome]" = queue.Queue()
        self.members: dict[int, list[Member]] = {}
        self.plans: dict[int, RoundPlan] = {}
        self.owner_rounds: dict[int, OwnerRound] = {}
        self.received: dict[tuple[int, bytes], spb.ShardResult] = {}
        self._pending: dict[tuple[int, bytes], asyncio.Future] = {}
        self._round_open: dict[int, asyncio.Event] = {}
        self.round = 0
        """The round the loop has open (or opens next)."""
        self.member = True
        self.digest_round, self.digest = 0, b""
        self._handoff: Handoff | None = None
        self._handoff_event: asyncio.Event | None = None
        self._leave = False
        self._stopped = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.deadline = rounds.deadline
        self._spreads: list[float] = []
        self._signs = ShardSigns(layout, run.aggregation, run.device)
        self._sign_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="demo-node-owner")
        self.finished = threading.Event()
        """Set when the loop has ended (after leaving, or stopped)."""

    # -- lifecycle (network thread) ----------------------------------------------------------------------------
    async def start(self, round: int, members: list[Member], member: bool) -> None:
        self.round, self.member = round, member
        self.members[round] = sorted(set(members))
        self._handoff_event = asyncio.Event()
        await self.transport.serve("contribute", self._on_contribute)
        await self.transport.serve("fetch", self._on_fetch)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._sign_pool.shutdown(wait=False)

    # -- calls from the training side (any thread) -------------------------------------------------------------
    def hand_over(self, contribution: Contribution) -> Handoff:
        """Queue this node's next contribution; it goes into the next round this node opens as a member."""
        handoff = Handoff(contribution)
        self.transport.host.loop.call_soon_threadsafe(self._put, handoff)
        return handoff

    def _put(self, handoff: Handoff) -> None:
        self._handoff = handoff
        assert self._handoff_event is not None
        self._handoff_event.set()

    def withdraw(self, handoff: Handoff, timeout: float = 10.0) -> bool:
        """Take back a handed-over contribution that no round has taken yet; False if a round took it."""

        async def take_back() -> bool:
            if self._handoff is handoff and not handoff.taken.is_set():
                self._handoff = None
                return True
            return False

        if handoff.taken.is_set():
            return False
        return self.transport.host.call(take_back(), timeout)

    def set_digest(self, round: int, digest: bytes) -> None:
        self.digest_round, self.digest = round, digest

    def request_leave(self) -> None:
        self.transport.host.loop.call_soon_threadsafe(self._request_leave)

    def _request_leave(self) -> None:
        self._leave = True
        if self._handoff_event is not None:
            self._handoff_event.set()

    # -- the round loop ----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                outcome = await self._one_round(self.round)
                self.outcomes.put(outcome)
                self._evict(self.round)
                if outcome.leaving or (self._leave and not self.member):
                    break  # a member leaves after its leaving round; a node that is no member simply stops
                self.round += 1
                self.member = any(m.peer == self.me for m in self.members[self.round])
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("round loop failed")
        finally:
            self.finished.set()

    async def _one_round(self, r: int) -> RoundOutcome:
        opened = time.monotonic()
        plan = make_plan(r, self.members[r], self.layout, self.payload_bytes, self.cfg.exchange)
        self.plans[r] = plan
        if self.me in plan.owners:
            self.owner_rounds[r] = OwnerRound(plan, self.me, self.layout, self.run.run_id, self.deadline,
                                              self._packed_signs, self.counters)
        loop = asyncio.get_running_loop()
        for owner in plan.owners:
            self._pending[(r, owner)] = loop.create_future()  # resolved once this node got or gave up on it
        self._round_open.setdefault(r, asyncio.Event()).set()
        handoff = await self._wait_contribution(r, opened)
        contribution = handoff.contribution if handoff is not None else None
        if handoff is not None:
            handoff.taken.set()
        leaving = self._leave and self.member
        payloads, slices = {}, {}
        if contribution is not None:
            for owner in plan.owners:
                slices[owner] = restrict(contribution, plan.ranges[owner])
                payloads[owner] = encode(slices[owner], self.layout, run_id=self.run.run_id, round=r, sender=self.me)
        requests = {
            owner: spb.Contribute(round=r, payload=payloads.get(owner, b""), digest_round=self.digest_round,
                                  digest=self.digest, leaving=leaving, joining=not self.member,
                                  client=self.run.client, plan=plan.fingerprint if self.member else b"")
            for owner in plan.owners
        }
        results = await asyncio.gather(*(self._ask_owner(r, o, requests[o], payloads.get(o, b""), slices.get(o))
                                         for o in plan.owners))
        shards, refusals = [], {}
        missing = [o for o, res in zip(plan.owners, results) if res is None]
        fetched = dict(zip(missing, await asyncio.gather(*(self._fetch(r, o, plan) for o in missing))))
        for owner, res in zip(plan.owners, results):
            source = "owner"
            if res is None:
                res = fetched[owner]
                source = "peer" if res is not None else "none"
            elif res.refusal:
                refusals[owner] = refusal_name(res.refusal)
            shards.append(ShardOutcome(owner, plan.ranges[owner], res, source))
        next_members = self._next_members(plan, shards)
        self.members[r + 1] = next_members
        if self.cfg.adaptive_deadline and r in self.owner_rounds and self.owner_rounds[r].spread is not None:
            self._adapt(self.owner_rounds[r].spread)
        digests = {p.peer: p for s in shards if s.result is not None for p in s.result.present}
        return RoundOutcome(
            round=r, plan=plan, shards=shards, contribution=contribution, next_members=next_members,
            digests=list(digests.values()), seconds=time.monotonic() - opened, leaving=leaving, member=self.member,
            refusals=refusals,
        )

    async def _packed_signs(self, contributions: list[Contribution], ranges: dict[int, tuple[int, int]]):
        """An owner's shard update in sign exchange, computed off the network thread."""

        def compute() -> tuple[bytes, bytes]:
            return pack_signs(self._signs.signs(contributions), ranges)

        return await asyncio.get_running_loop().run_in_executor(self._sign_pool, compute)

    async def _wait_contribution(self, r: int, opened: float) -> Handoff | None:
        """This node's contribution for round r, or None if it is not ready in time (see the module docstring)."""
        assert self._handoff_event is not None
        lim = self.limits
        while True:
            if self._handoff is not None and not self._handoff.taken.is_set():
                handoff, self._handoff = self._handoff, None
                self._handoff_event.clear()
                return handoff
            if self._leave or not self.member or self._stopped.is_set():
                return None
            now = time.monotonic()
            limit = opened + self.deadline * lim.own_wait_share
            own = self.owner_rounds.get(r)
            if own is not None and own.first_foreign is not None:
                # the others are ready: wait a little more than it took them, then go on without
                lead = own.first_foreign - opened
                limit = min(limit, own.first_foreign + lim.straggler_grace + lim.straggler_grace_share * lead)
            if now >= limit:
                return None
            self._handoff_event.clear()
            try:
                await asyncio.wait_for(self._handoff_event.wait(), timeout=min(0.05, limit - now))
            except asyncio.TimeoutError:
                pass

    def _adapt(self, spread: float) -> None:
        """Adaptive deadline: a multiple of the recent arrival spread, within [a floor, the configured deadline]."""
        lim = self.limits
        self._spreads = (self._spreads + [spread])[-lim.adaptive_window:]
        self.deadline = min(self.cfg.deadline, max(lim.adaptive_floor, lim.adaptive_factor * max(self._spreads)))

    def _next_members(self, plan: RoundPlan, shards: list[ShardOutcome]) -> list[Member]:
        present: dict[bytes, bool] = {}
        leavers: set[bytes] = set()
        for s in shards:
            if s.result is None:
                continue
            for p in list(s.result.present) + list(s.result.joiners):
                present[p.peer] = p.client
            leavers.update(s.result.leavers)
        if not present:
            return list(plan.members)  # no shard result at all: nothing learnt, keep the members
        return sorted(Member(p, c) for p, c in present.items() if p not in leavers)

    # -- asking owners and peers -------------------------------------------------------------------------------
    async def _ask_owner(self, r: int, owner: bytes, request: spb.Contribute, payload: bytes,
                         own_slice: Contribution | None) -> spb.ShardResult | None:
        key = (r, owner)
        fut = self._pending[key]
        res = None
        try:
            if owner == self.me:
                own = self.owner_rounds[r]
                own.arrive(self.me, request, own_slice)
                data = await own.result_for(self.me)
            else:
                timeout = 2 * self.cfg.deadline + self.limits.owner_slack
                data = await self.transport.request(owner, "contribute", request.SerializeToString(), timeout,
                                                    limit=self.max_request)
            res = spb.ShardResult.FromString(data)
            if res.round != r or res.owner != owner or res.status != spb.ShardResult.HAVE:
                log.warning("round %d: owner %s answered %s (%s)", r, owner.hex()[:12],
                            spb.ShardResult.Status.Name(res.status), refusal_name(res.refusal))
                res = None
            else:
                kept = res
                if res.mode == spb.EXCHANGE_RELAY and payload:
                    # keep a complete copy to serve to peers that ask for this result (this node's own slot was
                    # left empty by the owner: it has the payload)
                    kept = spb.ShardResult()
                    kept.CopyFrom(res)
                    for i, inc in enumerate(kept.included):
                        if inc.sender == self.me and not kept.relayed[i]:
                            kept.relayed[i] = payload
                self.received[key] = kept
        except Exception as exc:  # timeouts, resets, undecodable replies, and the daemon's errors for unreachable peers
            log.warning("round %d: no result from owner %s (%r)", r, owner.hex()[:12], exc)
            res = None
        finally:
            fut.set_result(res is not None)
        return res

    async def _fetch(self, r: int, owner: bytes, plan: RoundPlan) -> spb.ShardResult | None:
        """Ask every other member for a shard result this node could not get from its owner."""
        peers = [m.peer for m in plan.members if m.peer not in (self.me, owner) and not m.client]
        request = spb.FetchResult(round=r, owner=owner).SerializeToString()
        timeout = self.limits.fetch_timeout + self.cfg.deadline

        async def ask(peer: bytes) -> spb.ShardResult | None:
            try:
                data = await self.transport.request(peer, "fetch", request, timeout, limit=self.max_request)
                res = spb.ShardResult.FromString(data)
                if res.status == spb.ShardResult.HAVE and res.round == r and res.owner == owner:
                    return res
            except Exception as exc:
                log.debug("round %d: fetch of %s from %s failed: %r", r, owner.hex()[:12], peer.hex()[:12], exc)
            return None

        tasks = [asyncio.ensure_future(ask(p)) for p in peers]
        try:
            for done in asyncio.as_completed(tasks):
                res = await done
                if res is not None:
                    self.received[(r, owner)] = res
                    log.info("round %d: got the shard of unreachable %s from a peer", r, owner.hex()[:12])
                    return res
        finally:
            for t in tasks:
                t.cancel()
        log.info("round %d: nobody has the shard of %s: its blocks are skipped", r, owner.hex()[:12])
        return None

    # -- handlers (requests from other nodes) ------------------------------------------------------------------
    async def _owner_round(self, r: int) -> OwnerRound | None:
        if r not in self.owner_rounds and r > self.round:
            # the requester finished the previous round before this node did: wait for it to open here
            event = self._round_open.setdefault(r, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=2 * self.cfg.deadline + self.limits.owner_slack)
            except asyncio.TimeoutError:
                return None
        return self.owner_rounds.get(r)

    def _refusal(self, round: int, reason: str) -> bytes:
        self.counters.refused(reason)
        return spb.ShardResult(round=round, owner=self.me, status=spb.ShardResult.REJECTED,
                               refusal=refusal_code(reason)).SerializeToString()

    async def _on_contribute(self, stream: Stream) -> None:
        data = await stream.recv(limit=self.max_request)
        try:
            msg = spb.Contribute.FromString(data)
        except DecodeError:
            await stream.send(self._refusal(0, "malformed"))
            return
        keep = self.limits.keep_rounds
        if msg.round > self.round + keep or msg.round + keep < self.round:
            await stream.send(self._refusal(msg.round, "round_unknown"))
            return
        own = await self._owner_round(msg.round)
        if own is None:
            await stream.send(self._refusal(msg.round, "not_owner"))
            return
        if msg.plan and msg.plan != own.plan.fingerprint:
            log.warning("round %d: %s computed another plan (members or mode differ)", msg.round, stream.peer_b58)
            await stream.send(self._refusal(msg.round, "plan_mismatch"))
            return
        own.arrive(stream.peer, msg)
        await stream.send(await own.result_for(stream.peer))

    async def _on_fetch(self, stream: Stream) -> None:
        data = await stream.recv(limit=self.limits.small_message)
        try:
            msg = spb.FetchResult.FromString(data)
        except DecodeError:
            self.counters.refused("malformed")
            return
        key = (msg.round, msg.owner)
        if msg.round > self.round:
            await self._owner_round(msg.round)  # wait for this node to reach that round
        pending = self._pending.get(key)
        if pending is not None and not pending.done():
            await asyncio.shield(pending)  # answer only once this node has got or given up on that result
        reply = None
        if key in self.received:
            reply = self.received[key].SerializeToString()
        elif msg.owner == self.me and msg.round in self.owner_rounds and self.owner_rounds[msg.round].closed.is_set():
            reply = self.owner_rounds[msg.round].full_result()
        if reply is None:
            reply = spb.ShardResult(round=msg.round, owner=msg.owner, status=spb.ShardResult.DONT_HAVE).SerializeToString()
        await stream.send(reply)

    def _evict(self, r: int) -> None:
        old = r - self.limits.keep_rounds
        for k in [k for k in self.owner_rounds if k < old]:
            del self.owner_rounds[k]
        for k in [k for k in self.received if k[0] < old]:
            del self.received[k]
        for k in [k for k in self._pending if k[0] < old]:
            del self._pending[k]
        for d in (self.plans, self.members, self._round_open):
            for k in [k for k in d if k < old]:
                del d[k]


def majority_digest(presence: list[spb.Presence], digest_round: int) -> tuple[bytes, list[bytes]] | None:
    """The digest most peers reported for round ``digest_round`` (ties: the one of the smallest peer id), and the
    peers that reported it."""
    same = [p for p in presence if p.digest_round == digest_round and p.digest]
    if not same:
        return None
    counts = Counter(p.digest for p in same)
    top = max(counts.values())
    best = min((p for p in same if counts[p.digest] == top), key=lambda p: p.peer).digest
    return best, sorted(p.peer for p in same if p.digest == best)
