"""One round's exchange of this node with the round's owners and verifiers: send each owner the signed statement (to
the two owners that pass it on) and the contribution for its blocks, with, for the shard that owner verifies, this
node's payload for it; read back each shard's signed result and, on the same stream, the verdicts; judge the shards
this node verifies; and, where an owner cannot be had, ask the other members for its result.

Every wait on a peer is short and bounded (:class:`Patience`): once half of the owners answered, the others get a
grace and as long again as those took. A member this node cannot reach at all does not hold up this node's own shard.
When an owner cannot be reached, the node asks the other members for that shard's result; a member answers "don't
have" only once it has itself given up on the owner, and then never takes that result from the owner any more, so
either some member has it and every node that asks gets it, or nobody applies it.
"""

from __future__ import annotations

import asyncio
import logging

from demo_node.core.contribution import Contribution
from demo_node.swarm.asking import fetch_result, inputs_from
from demo_node.swarm.context import RoundContext
from demo_node.swarm.included import inputs_hash
from demo_node.swarm.plan import RoundPlan
from demo_node.swarm.results import NOT_AUDITED, Received, Verdict
from demo_node.swarm.signing import open_verdict
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

log = logging.getLogger(__name__)


class RoundExchange:
    def __init__(self, ctx: RoundContext, plan: RoundPlan, statement: spb.Signed, slices: dict[bytes, Contribution],
                 payloads: dict[bytes, spb.Signed], member: bool, joining: bool, audited: bool):
        """``slices`` and ``payloads``: this node's contribution for each owner's blocks (empty without one);
        ``member``/``joining``: this node's role in the round; ``audited``: the run audits a fraction of rounds
        (contributors keep their payloads for verifiers instead of sending them)."""
        self.ctx, self.plan, self.r = ctx, plan, plan.round
        self.statement, self.slices, self.payloads = statement, slices, payloads
        self.member, self.joining, self.audited = member, joining, audited
        loop = asyncio.get_running_loop()
        asked = loop.time()
        self.results = ctx.patience(len(plan.owners), asked)
        self.verdict_wait = ctx.patience(len(plan.verifiers), asked)
        # a verifier is an owner too: the payload for the shard it verifies rides on the stream to its own shard,
        # and the verdict comes back on it after the shard's result (one stream per owner, not two)
        self.verdict_streams = {o: loop.create_future() for o, v in plan.verifiers.items() if v != ctx.me}
        books = ctx.books
        for owner in plan.owners:
            books.pending[(self.r, owner)] = loop.create_future()  # resolved once this node got or gave up on it
        self.asking = {o: asyncio.ensure_future(self.ask_owner(o)) for o in plan.owners}
        self.settled = {o: asyncio.ensure_future(self.settle(o)) for o in plan.owners}
        books.settling.update({(self.r, o): t for o, t in self.settled.items()})
        self.judging = [asyncio.ensure_future(self.judge(o)) for o in plan.verified_by(ctx.me)]
        self.verdicts = {o: asyncio.ensure_future(self.ask_verifier(o)) for o in plan.verifiers}
        books.verdicts_got.update({(self.r, o): v for o, v in self.verdicts.items()})

    def _verify_part(self, owner: bytes) -> tuple[spb.Verify, asyncio.Future] | None:
        """What the request to ``owner`` carries for the shard ``owner`` verifies, and the future that gets the
        stream its verdict will come back on (None when ``owner`` verifies nothing, or is this node)."""
        checked = [o for o in self.plan.verified_by(owner) if o in self.verdict_streams]
        if owner == self.ctx.me or not checked:
            return None
        payload = None if self.audited else self.payloads.get(checked[0])
        return spb.Verify(round=self.r, owner=checked[0], payload=payload), self.verdict_streams[checked[0]]

    async def ask_owner(self, owner: bytes) -> Received | None:
        ctx, plan, r = self.ctx, self.plan, self.r
        key = (r, owner)
        fut = ctx.books.pending[key]
        verify = self._verify_part(owner)
        payload = self.payloads.get(owner)
        got = None
        stream = None
        try:
            shares = plan.shares(ctx.me)
            if owner == ctx.me:
                own = ctx.books.owner_rounds[r]
                own.arrive(ctx.me, self.joining, self.statement if owner in shares else None, payload,
                           self.slices.get(owner))
                data = await own.result_for(ctx.me)
            else:
                request = spb.Contribute(round=r, payload=payload)
                if owner in shares:
                    request.statement.CopyFrom(self.statement)
                else:
                    request.plan, request.joining = (plan.fingerprint if self.member else b""), self.joining
                if verify is not None:
                    request.verify.CopyFrom(verify[0])
                cap = ctx.owner_timeout()
                try:
                    stream = await self.results.within(
                        ctx.transport.send_request(owner, "contribute", request.SerializeToString(), cap,
                                                   reuse=True), cap)
                except Exception:
                    self._unreachable(owner)
                    raise
                try:
                    data = await self.results.within(stream.recv(ctx.result_limit(plan)), cap)
                except asyncio.TimeoutError:
                    raise
                except Exception:
                    self._unreachable(owner)  # the stream died under it (the peer or its daemon went down)
                    raise
            got = ctx.open_result(r, owner, data, plan)
            if got is not None and plan.mode == "relay":
                # keep a complete copy to serve to peers that ask for this result (this node's own slot was left
                # empty by the owner: it has the payload), and take it only if it carries what its body names
                got.relayed = [payload if sender == ctx.me and not s.body and payload is not None else s
                               for sender, s in zip(got.senders, got.relayed)]
                if len(got.relayed) != len(got.senders) or inputs_hash(got.relayed) != got.body.inputs_hash:
                    log.warning("round %d: owner %s relayed payloads its result does not name", r, owner.hex()[-12:])
                    ctx.counters.refused("coverage")
                    got = None
            if got is not None:
                self.results.answer()
                ctx.books.received[key] = spb.ShardResult(status=spb.ShardResult.HAVE, body=got.signed,
                                                          relayed=got.relayed)
        except Exception as exc:  # timeouts, resets, and the daemon's own errors for unreachable peers
            log.warning("round %d: no result from owner %s (%r)", r, owner.hex()[-12:], exc)
            got = None
        finally:
            fut.set_result(got is not None)
            if verify is not None:
                # the verdict comes next on this stream: whoever waits for it reads it and closes the stream
                verify[1].set_result(stream if got is not None else None)
            if stream is not None and got is not None and verify is None:
                await ctx.transport.release(stream)  # every answer read: the next round's request goes on it
            elif stream is not None and (verify is None or got is None):
                await stream.close()
        return got

    def _unreachable(self, peer: bytes) -> None:
        """This node could not even open a stream to ``peer`` this round, or it died under it: its own shard stops
        waiting for it (a dead peer in a two-node swarm would hold every round to the deadline otherwise)."""
        own = self.ctx.books.owner_rounds.get(self.r)
        if own is not None:
            own.passed(peer)

    async def settle(self, owner: bytes) -> tuple[Received | None, str]:
        """The owner's result, from the owner or, if it cannot be had there, from the peers; and where it came from."""
        got = await asyncio.shield(self.asking[owner])
        if got is not None:
            return got, "owner"
        got = await fetch_result(self.ctx, self.r, owner, self.plan)
        return got, ("peer" if got is not None else "none")

    async def judge(self, owner: bytes) -> None:
        """As the verifier of ``owner``'s shard: judge its result as soon as this node has it (or gave up on it)."""
        ctx, r = self.ctx, self.r
        got, _ = await asyncio.shield(self.settled[owner])
        await ctx.books.verifier_rounds[(r, owner)].judge(
            got.signed if got else None, got.body if got else None,
            lambda peer, senders: inputs_from(ctx, r, peer, owner, senders), relayed=got.relayed if got else None)

    async def ask_verifier(self, owner: bytes) -> Verdict | None:
        """The verdict on ``owner``'s shard: this node's own, or what its verifier sends after its own shard's result
        on the stream this node opened to it."""
        ctx, r = self.ctx, self.r
        verifier = self.plan.verifiers[owner]
        cap = ctx.owner_timeout() + ctx.limits.fetch_timeout
        stream = None
        try:
            if verifier == ctx.me:
                vr = ctx.books.verifier_rounds[(r, owner)]
                payload = self.payloads.get(owner)
                if payload is not None:
                    vr.arrive(ctx.me, payload, self.slices.get(owner))
                signed = await vr.verdict_for(cap)
                self.verdict_wait.answer()
                if signed is None:
                    return None if vr.audited else NOT_AUDITED
            else:
                stream = await self.verdict_streams[owner]
                if stream is None:
                    return None
                data = await self.verdict_wait.within(stream.recv(ctx.max_verdict),
                                                      cap)
                self.verdict_wait.answer()
                reply = spb.VerdictReply.FromString(data)
                await ctx.transport.release(stream)  # the verdict was the exchange's last answer
                stream = None
                if reply.not_audited:
                    return NOT_AUDITED
                if reply.status != spb.ShardResult.HAVE:
                    return None
                signed = reply.verdict
            return Verdict(signed, open_verdict(signed, verifier, owner, r))
        except Exception as exc:
            log.info("round %d: no verdict on %s from %s (%r)", r, owner.hex()[-12:], verifier.hex()[-12:], exc)
            return None
        finally:
            if stream is not None:
                await stream.close()
