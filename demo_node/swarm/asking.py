"""What a node asks other members for besides its exchange with each owner: a shard result its owner did not give
it (any member that got it may serve it), the verdict they got on a shard (when this node's verifier said WITHHELD or
nothing), and the signed inputs of a shard, or the owner's body a verifier judged (to check a verdict, or to audit a
round). Asking many members at once, a node waits for the slow ones only as long as :class:`Patience` allows."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from demo_node.swarm.included import inputs_hash
from demo_node.swarm.results import NOT_AUDITED, Received, Verdict
from demo_node.swarm.signing import BadSigned, open_verdict
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

if TYPE_CHECKING:
    from demo_node.swarm.context import RoundContext
    from demo_node.swarm.plan import RoundPlan

log = logging.getLogger(__name__)


async def inputs_from(ctx: RoundContext, r: int, peer: bytes, owner: bytes,
                      senders: list[bytes]) -> list[spb.Signed]:
    """Signed payloads (or, for no senders, the owner's judged body) that ``peer`` holds for ``owner``'s shard."""
    if peer == ctx.me:
        own, vr = ctx.books.owner_rounds.get(r), ctx.books.verifier_rounds.get((r, owner))
        if owner == ctx.me and own is not None:
            return own.inputs(senders) if senders else [own.body or spb.Signed()]
        if vr is not None:
            return vr.inputs(senders) if senders else [vr.owner_body or spb.Signed()]
        return [spb.Signed() for _ in senders] if senders else [spb.Signed()]
    request = spb.InputsRequest(round=r, owner=owner, senders=senders)
    try:
        data = await ctx.transport.request(peer, "inputs", request.SerializeToString(),
                                         ctx.limits.fetch_timeout + ctx.cfg.deadline,
                                         limit=(len(senders) + 2) * (ctx.max_payload + 2048), reuse=True)
        reply = spb.Inputs.FromString(data)
    except Exception as exc:
        log.info("round %d: no inputs of %s's shard from %s (%r)", r, owner.hex()[-12:], peer.hex()[-12:], exc)
        return [spb.Signed() for _ in senders]
    if not senders:
        return [reply.body]
    out = list(reply.payloads)[: len(senders)]
    return out + [spb.Signed()] * (len(senders) - len(out))


async def fetch_result(ctx: RoundContext, r: int, owner: bytes, plan: RoundPlan,
                       peers: list[bytes] | None = None) -> Received | None:
    """Ask every other member (or ``peers``) for a shard result this node could not get from its owner."""
    if peers is None:
        peers = [m.peer for m in plan.members if m.peer not in (ctx.me, owner) and not m.client]
    request = spb.FetchResult(round=r, owner=owner).SerializeToString()
    timeout = ctx.limits.fetch_timeout + ctx.cfg.deadline
    patience = ctx.patience(len(peers))

    async def ask(peer: bytes) -> Received | None:
        try:
            data = await ctx.transport.request(peer, "fetch", request, timeout, limit=ctx.result_limit(plan))
            patience.answer()
            got = ctx.open_result(r, owner, data, plan)
            if got is not None and plan.mode == "relay" and (len(got.relayed) != len(got.senders)
                                                             or inputs_hash(got.relayed) != got.body.inputs_hash):
                return None  # a copy without the payloads its body names is no copy
            return got
        except Exception as exc:
            log.debug("round %d: fetch of %s from %s failed: %r", r, owner.hex()[-12:], peer.hex()[-12:], exc)
        return None

    tasks = [asyncio.ensure_future(patience.within(ask(p), timeout)) for p in peers]
    try:
        for done in asyncio.as_completed(tasks):
            try:
                got = await done
            except asyncio.TimeoutError:
                continue
            if got is not None:
                ctx.books.received[(r, owner)] = spb.ShardResult(status=spb.ShardResult.HAVE, body=got.signed,
                                                         relayed=got.relayed)
                log.info("round %d: got the shard of %s from a peer", r, owner.hex()[-12:])
                return got
    finally:
        for t in tasks:
            t.cancel()
    log.info("round %d: nobody has the shard of %s: its blocks are skipped", r, owner.hex()[-12:])
    return None


async def reached_others(ctx: RoundContext, r: int, plan: RoundPlan) -> bool:
    """Whether this node's own result of round ``r`` may be applied here: another member holds it, or none of the
    others answered at all (they are gone: nobody applies otherwise). Only when members answered and none holds it
    is it not (they gave up on this owner, and skip its shard). Asked once they settled it."""
    peers = [m.peer for m in plan.members if m.peer != ctx.me]
    if not peers:
        return True
    request = spb.FetchResult(round=r, owner=ctx.me, confirm=True).SerializeToString()
    timeout = ctx.limits.fetch_timeout + ctx.cfg.deadline
    patience = ctx.patience(len(peers))

    async def ask(peer: bytes) -> bool | None:
        try:
            data = await ctx.transport.request(peer, "fetch", request, timeout, limit=ctx.limits.small_message)
            patience.answer()
            return spb.ShardResult.FromString(data).status == spb.ShardResult.HAVE
        except Exception as exc:
            log.debug("round %d: %s did not answer about this node's result (%r)", r, peer.hex()[-12:], exc)
        return None

    answered = False
    tasks = [asyncio.ensure_future(patience.within(ask(p), timeout)) for p in peers]
    try:
        for done in asyncio.as_completed(tasks):
            try:
                have = await done
            except asyncio.TimeoutError:
                continue
            if have:
                return True
            answered = answered or have is not None
    finally:
        for t in tasks:
            t.cancel()
    return not answered


async def verdicts_from_peers(ctx: RoundContext, r: int, owner: bytes, plan: RoundPlan) -> list[Verdict]:
    """The verdicts the round's other members got from ``owner``'s verifier (each checked to be the verifier's, on
    that shard of that round; "not audited" answers as NOT_AUDITED), asked all at once."""
    verifier = plan.verifiers[owner]
    peers = [m.peer for m in plan.members if m.peer != ctx.me]
    request = spb.FetchVerdict(round=r, owner=owner).SerializeToString()
    timeout = ctx.limits.fetch_timeout + ctx.cfg.deadline
    patience = ctx.patience(len(peers))

    async def ask(peer: bytes) -> Verdict | None:
        try:
            data = await ctx.transport.request(peer, "verdict", request, timeout,
                                             limit=ctx.max_verdict)
            patience.answer()
            reply = spb.VerdictReply.FromString(data)
            if reply.not_audited:
                return NOT_AUDITED
            if reply.status == spb.ShardResult.HAVE:
                return Verdict(reply.verdict, open_verdict(reply.verdict, verifier, owner, r))
        except (BadSigned, Exception) as exc:
            log.debug("round %d: no verdict on %s from %s (%r)", r, owner.hex()[-12:], peer.hex()[-12:], exc)
        return None

    got = await asyncio.gather(*(patience.within(ask(p), timeout) for p in peers), return_exceptions=True)
    return [v for v in got if v is not None and not isinstance(v, BaseException)]
