"""One shard of one round, as its verifier checks it (three members or more).

A verifier signs one verdict per shard and round, on the body it judged: an owner that signed two results for its
shard cannot have both applied (a node whose body is not the judged one takes the judged one, and holds two bodies
the owner signed: evidence). In relay exchange that is all it checks (every node aggregates the relayed payloads
itself); in sign and sparse exchange it recomputes the update. Contributors send the verifier the same signed
payloads they send the shard's owner. Once the verifier has the owner's signed result, it recomputes the update
from the inputs the result names (asking the owner for any it lacks, or for all of them when the ones it holds do
not hash to what the result names: the owner must hold them, and they are signed by their senders), compares, and
signs a verdict: CORRECT, WRONG (with the update the inputs give), WITHHELD (the owner would not serve inputs its
result names; the update weighs what an unverified one does, counted apart), MISSING (no result reached it: every
node skips the shard, its owner too) or UNVERIFIED (it cannot judge the result). A run that audits a fraction of
rounds saves the second copy: contributors keep their payloads, and the verifier draws in secret, only once it holds
the owner's signed result, whether to audit the round; if it does, it asks each contributor for its own payload
(which the owner cannot withhold), then the owner for any still missing (or not served within ``audit_wait``: a
contributor cannot hold up the verdict); if not, it signs no verdict and tells its contributors so.

A sign may differ only where the update is next to zero, and a cut only by near-ties (hardware rounds differently:
see shard_update.py and shard_cut.py); anything else is a lie, and the owner's signed result with the signed inputs
is the evidence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Awaitable, Callable

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.crypto import Identity
from demo_node.swarm.included import inputs_hash, senders_of
from demo_node.swarm.owner import read_payload
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.shard_update import MODE_CODES, RECOMPUTED, Update, judge, put, update_of
from demo_node.swarm.signing import BadSigned, body_hash, sign
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)

FetchInputs = Callable[[bytes, list[bytes]], Awaitable[list[spb.Signed]]]
"""(peer, senders) -> the signed payloads of ``senders`` that ``peer`` holds for the shard (empty where it has none)."""
ComputeFn = Callable[[Callable[[], object]], Awaitable[object]]
AUDIT_SEED = "DEMO_TEST_AUDIT_SEED"
"""Environment variable, for tests only (so not a ``DEMO_NODE_`` option): an integer that makes this process's audit
draws a seeded sequence, so a test can say which rounds are audited. Never set it in a real swarm: a liar that knows
the seed knows when to lie."""


def _audit_draw() -> random.Random:
    """The audit draw: from the operating system's entropy, so no peer can predict it from anything it saw (unless
    ``AUDIT_SEED`` is set)."""
    seed = os.environ.get(AUDIT_SEED, "")
    if not seed:
        return random.SystemRandom()
    try:
        return random.Random(int(seed))
    except ValueError:
        raise SystemExit(f"{AUDIT_SEED}={seed!r}: not an integer") from None


_DRAW = _audit_draw()


class VerifierRound:
    def __init__(self, plan: RoundPlan, owner: bytes, me: bytes, identity: Identity, layout: Layout, run_id: str,
                 signs: ShardSigns, compute: ComputeFn, audit_fraction: float = 1.0, audit_wait: float = 5.0):
        self.plan, self.owner, self.me, self.identity = plan, owner, me, identity
        self.audit_fraction, self.audit_wait = audit_fraction, audit_wait
        self.layout, self.run_id, self.round = layout, run_id, plan.round
        self.ranges = plan.owner_ranges(owner)
        self.signs, self.compute = signs, compute
        self.payloads: dict[bytes, spb.Signed] = {}
        self.contributions: dict[bytes, Contribution] = {}
        self.judged = asyncio.Event()
        self.verdict: spb.Signed | None = None
        self.audited = True
        """False once the verifier drew this round out of its audits (then it signs no verdict)."""
        self.owner_body: spb.Signed | None = None
        self._judging = False

    def arrive(self, sender: bytes, payload: spb.Signed, contribution: Contribution | None = None) -> str:
        """Keep a contributor's signed payload for the owner's blocks; the refusal reason if it is bad, else ""."""
        if sender not in self.plan.peers:
            return "not_member"
        try:
            if contribution is None:
                contribution = read_payload(payload, sender, self.layout, self.run_id, self.round, self.ranges)
        except (PayloadError, BadSigned) as exc:
            return exc.reason
        self.payloads[sender], self.contributions[sender] = payload, contribution
        return ""

    async def judge(self, body_signed: spb.Signed | None, body: spb.ShardBody | None, fetch: FetchInputs,
                    relayed: list[spb.Signed] | None = None) -> None:
        """Judge the owner's result (None: nobody got it, or it did not check out), once; ``relayed``: the payloads
        a relay result carries (this node's own among them)."""
        if self._judging:
            return
        self._judging = True
        try:
            if body is None:
                finding, truth = spb.VerdictBody.MISSING, Update()
            elif body.mode == spb.EXCHANGE_RELAY:
                finding, truth = self._relay_finding(body, relayed or []), Update()
            else:
                finding, truth = await self._find(body, fetch)
        except Exception:
            log.exception("round %d: verifying the shard of %s failed", self.round, self.owner.hex()[-12:])
            finding, truth = spb.VerdictBody.UNVERIFIED, Update()
        # served to the nodes that ask for the judged body only from here on, when the finding is made
        self.owner_body = body_signed
        if finding is None:
            self.audited = False
            self.judged.set()
            return
        verdict = spb.VerdictBody(round=self.round, owner=self.owner, verifier=self.me, finding=finding,
                                  body_hash=body_hash(body_signed) if body_signed is not None else b"",
                                  plan=self.plan.fingerprint)
        if finding == spb.VerdictBody.WRONG:
            put(verdict, truth)
            log.warning("round %d: the shard result of %s contradicts its inputs", self.round, self.owner.hex()[-12:])
        self.verdict = sign(self.identity, verdict.SerializeToString())
        self.judged.set()

    def _relay_finding(self, body: spb.ShardBody, relayed: list[spb.Signed]) -> int:
        """CORRECT when the relayed payloads are the inputs the body names (the driver took the result from the
        owner only if they were: this checks it again), else UNVERIFIED."""
        try:
            senders = senders_of(self.plan.order, body.included)
            if len(relayed) != len(senders) or inputs_hash(relayed) != body.inputs_hash:
                return spb.VerdictBody.UNVERIFIED
        except PayloadError:
            return spb.VerdictBody.UNVERIFIED
        return spb.VerdictBody.CORRECT

    async def _find(self, body: spb.ShardBody | None, fetch: FetchInputs) -> tuple[int | None, Update]:
        """The finding (None: not drawn for an audit) and the update the inputs give."""
        if body is None:
            return spb.VerdictBody.MISSING, Update()
        if self.plan.mode not in RECOMPUTED or body.mode != MODE_CODES[self.plan.mode]:
            return spb.VerdictBody.UNVERIFIED, Update()
        try:
            senders = senders_of(self.plan.order, body.included)
        except PayloadError:
            return spb.VerdictBody.UNVERIFIED, Update()
        if self.audit_fraction < 1.0:
            if _DRAW.random() >= self.audit_fraction:
                return None, Update()
            await self._collect(senders, fetch)
        missing = [s for s in senders if s not in self.payloads]
        if not missing and inputs_hash([self.payloads[s] for s in senders]) != body.inputs_hash:
            missing = senders  # a contributor sent this verifier another payload than the owner: take the owner's
        if missing:
            for sender, signed in zip(missing, await fetch(self.owner, missing)):
                if signed.body:
                    self.arrive(sender, signed)
        if any(s not in self.payloads for s in senders) or \
                inputs_hash([self.payloads[s] for s in senders]) != body.inputs_hash:
            log.warning("round %d: the owner %s would not serve the inputs its result names", self.round,
                        self.owner.hex()[-12:])
            return spb.VerdictBody.WITHHELD, Update()
        inputs = [self.contributions[s] for s in senders]
        ok, truth = await self.compute(lambda: judge(self.plan.mode, self.signs, inputs, self.layout, self.ranges,
                                                     update_of(body), run_id=self.run_id, round=self.round,
                                                     owner=self.owner))
        return (spb.VerdictBody.CORRECT if ok else spb.VerdictBody.WRONG), truth

    async def _collect(self, senders: list[bytes], fetch: FetchInputs) -> None:
        """An audit's inputs from their senders, all at once (each serves its own payload), for at most
        ``audit_wait`` seconds: what is still missing then is asked of the owner."""
        asking = {asyncio.ensure_future(fetch(s, [s])): s for s in senders if s not in self.payloads and s != self.me}
        if not asking:
            return
        done, pending = await asyncio.wait(asking, timeout=self.audit_wait)
        for task in pending:
            task.cancel()
        for task in done:
            got = task.result() if task.exception() is None else None
            if got and got[0].body:
                self.arrive(asking[task], got[0])

    async def verdict_for(self, timeout: float) -> spb.Signed | None:
        try:
            await asyncio.wait_for(self.judged.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.verdict

    def inputs(self, senders: list[bytes]) -> list[spb.Signed]:
        return [self.payloads.get(s, spb.Signed()) for s in senders]
