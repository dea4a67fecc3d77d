"""What a round came to for this node, and how its update signs are computed from the shard results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from demo_node.core.contribution import Contribution
from demo_node.core.optimizer import DeMo
from demo_node.swarm.plan import Member, RoundPlan
from demo_node.wire.codec import decode
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import unpack_signs


@dataclass
class ShardOutcome:
    owner: bytes
    ranges: dict[int, tuple[int, int]]
    result: spb.ShardResult | None
    """None: nobody had the shard's result, every node skips these blocks this round."""
    source: str = "owner"
    """Where the result came from: the owner, another peer (the owner was unreachable), or none."""

    def included(self, peer: bytes) -> bool:
        return self.result is not None and any(inc.sender == peer for inc in self.result.included)


@dataclass
class RoundOutcome:
    round: int
    plan: RoundPlan
    shards: list[ShardOutcome]
    contribution: Contribution | None
    """This node's contribution sent in this round (None: it sent none)."""
    payloads: dict[bytes, bytes]
    """Owner -> the payload bytes this node sent it (to fill in its own relayed slot)."""
    next_members: list[Member]
    digests: list[spb.Presence]
    seconds: float
    """From the round's opening to its outcome, on this node."""
    leaving: bool = False
    member: bool = True
    """Whether this node was a member of the round (a joiner catching up is not)."""
    errors: dict[bytes, str] = field(default_factory=dict)
    """Owner -> why it refused this node's contribution."""

    def excluded_parts(self, me: bytes) -> Iterator[Contribution]:
        """The pieces of this node's contribution that no applied update included: to restore into the momentum."""
        if self.contribution is None:
            return
        for shard in self.shards:
            if shard.included(me):
                continue
            parts = {}
            for b, (start, stop) in shard.ranges.items():
                part = self.contribution.parts.get(b)
                if part is not None:
                    parts[b] = part.blocks(start, stop)
            if parts:
                yield Contribution(parts, self.contribution.samples)

    def sign_pieces(self, opt: DeMo, run_id: str, me: bytes) -> tuple[list[tuple[int, int, torch.Tensor]], int]:
        """(bucket, start, signs) pieces of every shard that has a result, and how many shards were skipped.

        Relay shards are decoded, aggregated in the result's order and inverted here; sign shards are unpacked."""
        pieces, skipped = [], 0
        for shard in self.shards:
            res = shard.result
            if res is None or not shard.ranges:
                skipped += res is None
                continue
            if res.mode == spb.EXCHANGE_SIGN:
                if not res.included:
                    continue  # nobody contributed to this shard: no sign step here (weight decay still applies)
                signs = unpack_signs(res.sign_bits, res.nonzero_blocks, opt.layout, shard.ranges)
            else:
                contributions = []
                for inc, data in zip(res.included, res.relayed):
                    if inc.sender == me and not data:
                        data = self.payloads.get(shard.owner, b"")
                    contributions.append(
                        decode(data, opt.layout, run_id=run_id, round=self.round, expect=shard.ranges).contribution
                    )
                if len(contributions) != len(res.included):
                    raise PayloadError("coverage", f"shard of {shard.owner.hex()[:12]} relays too few payloads")
                if not contributions:
                    continue
                # clone: the sign computer's workspace is reused by the next shard
                signs = {b: (st, t.clone()) for b, (st, t) in opt.sign_computer.signs(opt.aggregate(contributions)).items()}
            pieces.extend((b, start, s) for b, (start, s) in signs.items())
        return pieces, skipped


def restrict(contribution: Contribution, ranges: dict[int, tuple[int, int]]) -> Contribution:
    """The part of a contribution that covers ``ranges`` (an owner's blocks)."""
    parts = {b: contribution.parts[b].blocks(start, stop) for b, (start, stop) in ranges.items()}
    return Contribution(parts, contribution.samples)

