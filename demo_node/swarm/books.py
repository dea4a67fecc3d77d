"""What a node keeps of the rounds it runs, in one place: plans and members, its owner and verifier rounds, the results
and verdicts it got, its payloads kept for audits, the statements the results passed on, the books of who may own as
each round was planned; which rounds peers may speak of; and what goes when (retention).

The round loop (:mod:`demo_node.swarm.driver`), the handlers that answer peers, the asking and the checking all read
and write these, and only these, between them.
"""

from __future__ import annotations

import asyncio

from demo_node.limits import Limits
from demo_node.swarm.membership import Statements
from demo_node.swarm.owner import OwnerRound
from demo_node.swarm.plan import Member, RoundPlan
from demo_node.swarm.retention import Retention
from demo_node.swarm.standing import Standing
from demo_node.swarm.verifier import VerifierRound
from demo_node.wire.proto import demo_node_swarm_pb2 as spb


class RoundBooks:
    def __init__(self, limits: Limits, num_params: int, payload_bytes: int):
        self.limits = limits
        self.retention = Retention(limits, num_params, payload_bytes)
        self.round = 0
        """The round the loop has open (or opens next)."""
        self.members: dict[int, list[Member]] = {}
        """Round -> its members, with their own client flags."""
        self.plans: dict[int, RoundPlan] = {}
        self.standing = Standing()
        """Who may own shards (see demo_node/swarm/standing.py), as of the round the loop has open."""
        self.standing_at: dict[int, Standing] = {}
        """Round -> the books of who may own as that round was planned (for state transfers)."""
        self.owner_rounds: dict[int, OwnerRound] = {}
        self.verifier_rounds: dict[tuple[int, bytes], VerifierRound] = {}
        self.received: dict[tuple[int, bytes], spb.ShardResult] = {}
        """(round, owner) -> the shard result this node got (served to peers that could not get it)."""
        self.kept_for_audit: dict[tuple[int, bytes], spb.Signed] = {}
        """(round, owner) -> this node's signed payload for a verified shard, in a run that audits a fraction of
        rounds: served to the shard's verifier when it audits."""
        self.pending: dict[tuple[int, bytes], asyncio.Future] = {}
        """(round, owner) -> resolved once this node got that result from its owner or gave up on the owner."""
        self.settling: dict[tuple[int, bytes], asyncio.Future] = {}
        """(round, owner) -> done once this node has that result, from its owner or a peer, or gave up on it."""
        self.verdicts_got: dict[tuple[int, bytes], asyncio.Future] = {}
        """(round, owner) -> the verdict this node got from that shard's verifier (served to members that ask)."""
        self.round_open: dict[int, asyncio.Event] = {}
        self.statements: dict[int, Statements] = {}
        """Round -> the verified statements its results passed on (kept for state transfers)."""
        self.peer_rounds: dict[bytes, int] = {}
        """Peer -> the round of its latest request to contribute: it is done with every round before that one."""
        self.out_of_step: dict[int, dict[bytes, int]] = {}
        """Round -> owner -> the round it said it was at when it refused this one as not its own."""

    # -- rounds peers speak of -----------------------------------------------------------------------------------
    def in_window(self, r: int) -> bool:
        return self.retention.in_window(self.round, r)

    async def wait_open(self, r: int, timeout: float) -> None:
        """Until round ``r`` opened here (a requester that finished the previous round first), at most ``timeout``."""
        if r > self.round or r in self.round_open:
            event = self.round_open.setdefault(r, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass

    async def owner_round(self, r: int, timeout: float) -> OwnerRound | None:
        """This node's owner round ``r``, waiting for it to open if the requester is a round ahead."""
        await self.wait_open(r, timeout)
        return self.owner_rounds.get(r)

    def moved_on(self, peer: bytes, r: int) -> None:
        """``peer`` (authenticated by its stream) asked to contribute to round ``r``: it will not come to the
        rounds before it, so this node's owner rounds before it stop waiting for it. A peer that says so falsely
        only leaves itself out."""
        self.peer_rounds[peer] = r
        for own in self.owner_rounds.values():
            if own.round < r:
                own.passed(peer)

    # -- what goes when ------------------------------------------------------------------------------------------
    def evict(self, r: int) -> None:
        """After round ``r``: drop what is older than the rounds kept."""
        old = self.retention.oldest_kept(r, len(self.members.get(r, ())))
        for d in (self.owner_rounds, self.plans, self.members, self.round_open, self.statements, self.standing_at):
            for k in [k for k in d if k < old]:
                del d[k]
        for k in [k for k in self.kept_for_audit if k[0] <= r - self.limits.audit_rounds_kept]:
            del self.kept_for_audit[k]
        for d in (self.verifier_rounds, self.received, self.pending, self.verdicts_got, self.settling):
            for k in [k for k in d if k[0] < old]:
                del d[k]
        members = {m.peer for m in self.members.get(r + 1, ())}
        for p in [p for p in self.peer_rounds if p not in members]:
            del self.peer_rounds[p]

    # -- what a state transfer of round r holds --------------------------------------------------------------------
    def vouching(self, r: int) -> list[spb.Signed]:
        """The signed statements in which members reported their digest of round ``r`` (from the results of that
        round and the next two: members that apply a little later report it then)."""
        vouching: dict[bytes, spb.Signed] = {}
        for k in (r, r + 1, r + 2):
            statements = self.statements.get(k)
            if statements is None:
                continue
            for peer, st in statements.by_peer.items():
                if st.digest_round == r and peer not in vouching:
                    vouching[peer] = statements.signed[peer]
        return list(vouching.values())
