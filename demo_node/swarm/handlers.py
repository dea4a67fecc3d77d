"""What a node answers other nodes during rounds: contributions to its shards (with payloads for the shard it
verifies, answered with the verdict on the same stream), requests for results it got, for the verdicts it got, for
inputs it holds, and for the evidence behind its accusations.

Every request is checked before anything is done with it: its size (the transport caps each kind's frames before
reading them), its round (only rounds this node keeps, or a few ahead), its statement (signed by the stream's own,
authenticated peer). Nothing a peer sends ends a handler other than with a refusal, and every handler has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from demo_node.net.transport import Stream
from demo_node.swarm.signing import BadSigned, open_statement
from demo_node.swarm.verifier import VerifierRound
from demo_node.wire.errors import refusal_code
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

if TYPE_CHECKING:
    from demo_node.swarm.context import RoundContext

log = logging.getLogger(__name__)


def _parse(cls, data: bytes):
    msg = cls()
    try:
        msg.ParseFromString(data)
    except Exception:
        return None
    return msg


class Handlers:
    def __init__(self, ctx: "RoundContext"):
        self.ctx = ctx

    async def serve(self) -> None:
        ctx, t = self.ctx, self.ctx.transport
        wait = ctx.owner_timeout() + ctx.limits.fetch_timeout + ctx.cfg.deadline
        small = ctx.limits.small_message
        # a contribution may carry a second payload (for the shard this node verifies), and its stream stays open
        # until that shard's verdict is out; then it waits for the same peer's contribution to the next round
        verdict_wait = ctx.owner_timeout() + ctx.limits.fetch_timeout
        await t.serve("contribute", self._on_contribute, limit=3 * ctx.max_payload + (1 << 20),
                      timeout=wait + verdict_wait, reuse=True)
        await t.serve("fetch", self._on_fetch, limit=small, timeout=wait)
        # an auditing verifier asks each contributor in the rounds it draws: on a stream kept for the next audit
        await t.serve("inputs", self._on_inputs, limit=small, timeout=wait, reuse=True)
        await t.serve("evidence", self._on_evidence, limit=small, timeout=wait)
        await t.serve("verdict", self._on_verdict, limit=small, timeout=wait)

    def _refusal(self, round: int, reason: str) -> bytes:
        self.ctx.counters.refused(reason)
        return spb.ShardResult(status=spb.ShardResult.REJECTED, refusal=refusal_code(reason),
                               current_round=self.ctx.books.round).SerializeToString()

    async def _on_contribute(self, stream: Stream) -> None:
        ctx = self.ctx
        msg = _parse(spb.Contribute, await stream.recv())
        if msg is None:
            await stream.send(self._refusal(0, "malformed"))
            return
        ctx.books.moved_on(stream.peer, msg.round)
        if not ctx.books.in_window(msg.round):
            await stream.send(self._refusal(msg.round, "round_unknown"))
            return
        signed = msg.statement if msg.HasField("statement") else None
        joining, plan = msg.joining, msg.plan
        if signed is not None:
            try:
                statement = open_statement(signed, run_id=ctx.run.run_id, round=msg.round, peer=stream.peer)
            except BadSigned as exc:
                await stream.send(self._refusal(msg.round, exc.reason))
                return
            joining, plan = statement.joining, statement.plan
        own = await ctx.books.owner_round(msg.round, ctx.owner_timeout())
        if own is None:
            await stream.send(self._refusal(msg.round, "not_owner"))
            return
        if plan and plan != own.plan.fingerprint:
            log.warning("round %d: %s computed another plan (members or mode differ)", msg.round, stream.peer_b58)
            own.passed(stream.peer)  # it came, and cannot take part: the shard does not wait for it
            await stream.send(self._refusal(msg.round, "plan_mismatch"))
            return
        if signed is not None and ctx.me not in own.plan.shares(stream.peer):
            signed = None  # not this owner's to pass on
        verifying = self._verify_arrival(msg.round, stream.peer, msg.verify) if msg.HasField("verify") else None
        own.arrive(stream.peer, joining, signed, msg.payload if msg.HasField("payload") else None)
        await stream.send(await own.result_for(stream.peer))
        if verifying is not None:
            await stream.send(await self._verdict_reply(*verifying))

    def _verify_arrival(self, r: int, sender: bytes, msg: spb.Verify) -> tuple[VerifierRound | None, str]:
        """Take a contributor's payload for the shard this node verifies; the verifier round (None if this node
        verifies no such shard) and the refusal ("" if none)."""
        ctx = self.ctx
        vr = ctx.books.verifier_rounds.get((r, msg.owner))
        if vr is None:
            ctx.counters.refused("not_verifier")
            return None, "not_verifier"
        refusal = vr.arrive(sender, msg.payload) if msg.HasField("payload") else ""
        if refusal:
            ctx.counters.refused(refusal)
        return vr, refusal

    async def _verdict_reply(self, vr: VerifierRound | None, refusal: str) -> bytes:
        if vr is None:
            return spb.VerdictReply(status=spb.ShardResult.REJECTED, refusal=refusal_code(refusal)).SerializeToString()
        verdict = await vr.verdict_for(self.ctx.owner_timeout() + self.ctx.limits.fetch_timeout)
        if verdict is None and not vr.audited:
            return spb.VerdictReply(status=spb.ShardResult.DONT_HAVE, not_audited=True).SerializeToString()
        reply = spb.VerdictReply(status=spb.ShardResult.HAVE if verdict is not None else spb.ShardResult.DONT_HAVE,
                                 refusal=refusal_code(refusal) if refusal else spb.REFUSAL_NONE)
        if verdict is not None:
            reply.verdict.CopyFrom(verdict)
        return reply.SerializeToString()

    async def _on_fetch(self, stream: Stream) -> None:
        ctx = self.ctx
        msg = _parse(spb.FetchResult, await stream.recv())
        if msg is None or not ctx.books.in_window(msg.round):
            await stream.send(self._refusal(0 if msg is None else msg.round,
                                            "malformed" if msg is None else "round_unknown"))
            return
        key = (msg.round, msg.owner)
        if msg.round > ctx.books.round:
            await ctx.books.wait_open(msg.round, ctx.owner_timeout())  # wait for this node to reach that round
        # answer only once this node has got or given up on that result (an owner asking whether its own result
        # reached anyone: once this node settled it, asking the others too)
        pending = (ctx.books.settling if msg.confirm else ctx.books.pending).get(key)
        if pending is not None and not pending.done():
            await asyncio.wait([asyncio.shield(pending)])
        if msg.confirm:
            have = key in ctx.books.received
            await stream.send(spb.ShardResult(status=spb.ShardResult.HAVE if have else spb.ShardResult.DONT_HAVE)
                              .SerializeToString())
            return
        reply = None
        if key in ctx.books.received:
            reply = ctx.books.received[key].SerializeToString()
        else:
            own = ctx.books.owner_rounds.get(msg.round) if msg.owner == ctx.me else None
            if own is not None and own.closed.is_set():
                reply = own.full_result()
        if reply is None:
            reply = spb.ShardResult(status=spb.ShardResult.DONT_HAVE).SerializeToString()
        await stream.send(reply)

    async def _on_verdict(self, stream: Stream) -> None:
        """The verdict this node got from a shard's verifier, once it has it (or gave up on it)."""
        ctx = self.ctx
        msg = _parse(spb.FetchVerdict, await stream.recv())
        if msg is None or not ctx.books.in_window(msg.round):
            ctx.counters.refused("malformed" if msg is None else "round_unknown")
            await stream.send(spb.VerdictReply(status=spb.ShardResult.REJECTED).SerializeToString())
            return
        if msg.round > ctx.books.round:
            await ctx.books.wait_open(msg.round, ctx.owner_timeout())
        got = ctx.books.verdicts_got.get((msg.round, msg.owner))
        verdict = None
        if got is not None:
            try:
                verdict = await asyncio.wait_for(asyncio.shield(got), ctx.owner_timeout() + ctx.limits.fetch_timeout)
            except (asyncio.TimeoutError, Exception):
                verdict = None
        if verdict is not None and not verdict.audited:
            reply = spb.VerdictReply(status=spb.ShardResult.DONT_HAVE, not_audited=True)
        elif verdict is not None:
            reply = spb.VerdictReply(status=spb.ShardResult.HAVE, verdict=verdict.signed)
        else:
            reply = spb.VerdictReply(status=spb.ShardResult.DONT_HAVE)
        await stream.send(reply.SerializeToString())

    async def _on_inputs(self, stream: Stream) -> None:
        ctx = self.ctx
        msg = _parse(spb.InputsRequest, await stream.recv())
        plan = ctx.books.plans.get(msg.round) if msg is not None else None
        if msg is None or plan is None or len(msg.senders) > len(plan.members):
            ctx.counters.refused("malformed" if msg is None else "round_unknown")
            await stream.send(spb.Inputs().SerializeToString())
            return
        senders = list(msg.senders)
        reply = spb.Inputs()
        kept = ctx.books.kept_for_audit.get((msg.round, msg.owner))
        if senders == [ctx.me] and kept is not None and plan.verifiers.get(msg.owner) == stream.peer:
            reply.payloads.append(kept)  # the shard's verifier audits the round: this node's own payload
            await stream.send(reply.SerializeToString())
            return
        own = ctx.books.owner_rounds.get(msg.round)
        vr = ctx.books.verifier_rounds.get((msg.round, msg.owner))
        if msg.owner == ctx.me and own is not None and own.closed.is_set():
            reply.payloads.extend(own.inputs(senders))
        elif vr is not None:
            if senders:
                reply.payloads.extend(vr.inputs(senders))
            elif vr.owner_body is not None:
                reply.body.CopyFrom(vr.owner_body)
        await stream.send(reply.SerializeToString())

    async def _on_evidence(self, stream: Stream) -> None:
        msg = _parse(spb.EvidenceRequest, await stream.recv())
        evidence = self.ctx.checker.accused.get(msg.accused) if msg is not None else None
        await stream.send((evidence or spb.Evidence()).SerializeToString())
