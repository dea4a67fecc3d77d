"""What a node asks other members for besides its exchange with each owner: a shard result its owner did not give
it (any member that got it may serve it), and the signed inputs of a shard, or the owner's body a verifier judged
(to check a verdict, or to audit a round)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from demo_node.wire.proto import demo_node_swarm_pb2 as spb

if TYPE_CHECKING:
    from demo_node.swarm.checking import Received
    from demo_node.swarm.driver import RoundDriver
    from demo_node.swarm.plan import RoundPlan

log = logging.getLogger(__name__)


async def inputs_from(d: RoundDriver, r: int, peer: bytes, owner: bytes, senders: list[bytes]) -> list[spb.Signed]:
    """Signed payloads (or, for no senders, the owner's judged body) that ``peer`` holds for ``owner``'s shard."""
    if peer == d.me:
        own, vr = d.owner_rounds.get(r), d.verifier_rounds.get((r, owner))
        if owner == d.me and own is not None:
            return own.inputs(senders) if senders else [own.body or spb.Signed()]
        if vr is not None:
            return vr.inputs(senders) if senders else [vr.owner_body or spb.Signed()]
        return [spb.Signed() for _ in senders] if senders else [spb.Signed()]
    request = spb.InputsRequest(round=r, owner=owner, senders=senders)
    try:
        data = await d.transport.request(peer, "inputs", request.SerializeToString(),
                                         d.limits.fetch_timeout + d.cfg.deadline,
                                         limit=(len(senders) + 2) * (d.max_payload + 2048), reuse=True)
        reply = spb.Inputs.FromString(data)
    except Exception as exc:
        log.info("round %d: no inputs of %s's shard from %s (%r)", r, owner.hex()[-12:], peer.hex()[-12:], exc)
        return [spb.Signed() for _ in senders]
    if not senders:
        return [reply.body]
    out = list(reply.payloads)[: len(senders)]
    return out + [spb.Signed()] * (len(senders) - len(out))


async def fetch_result(d: RoundDriver, r: int, owner: bytes, plan: RoundPlan) -> Received | None:
    """Ask every other member for a shard result this node could not get from its owner."""
    peers = [m.peer for m in plan.members if m.peer not in (d.me, owner) and not m.client]
    request = spb.FetchResult(round=r, owner=owner).SerializeToString()
    timeout = d.limits.fetch_timeout + d.cfg.deadline

    async def ask(peer: bytes) -> Received | None:
        try:
            data = await d.transport.request(peer, "fetch", request, timeout, limit=d.result_limit(plan))
            return d.open_result(r, owner, data, plan)
        except Exception as exc:
            log.debug("round %d: fetch of %s from %s failed: %r", r, owner.hex()[-12:], peer.hex()[-12:], exc)
        return None

    tasks = [asyncio.ensure_future(ask(p)) for p in peers]
    try:
        for done in asyncio.as_completed(tasks):
            got = await done
            if got is not None:
                d.received[(r, owner)] = spb.ShardResult(status=spb.ShardResult.HAVE, body=got.signed,
                                                         relayed=got.relayed)
                log.info("round %d: got the shard of unreachable %s from a peer", r, owner.hex()[-12:])
                return got
    finally:
        for t in tasks:
            t.cancel()
    log.info("round %d: nobody has the shard of %s: its blocks are skipped", r, owner.hex()[-12:])
    return None
