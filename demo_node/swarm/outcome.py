"""What a round came to for this node, and the update signs of its shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.swarm.plan import Member, RoundPlan
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.codec import decode
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import unpack_signs

SignPiece = tuple[int, int, torch.Tensor]
"""(bucket, first block, signs (n, h, w)) of a run of blocks."""


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
    next_members: list[Member]
    digests: list[spb.Presence]
    seconds: float
    """From the round's opening to its outcome, on this node."""
    leaving: bool = False
    member: bool = True
    """Whether this node was a member of the round (a joiner catching up is not)."""
    refusals: dict[bytes, str] = field(default_factory=dict)
    """Owner -> why it refused or dropped this node's contribution."""

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

    def sign_pieces(self, signs: ShardSigns, layout: Layout, run_id: str, me: bytes,
                    out: dict[int, torch.Tensor] | None = None) -> tuple[list[SignPiece], int]:
        """The update's signs of every shard that has a result, and how many shards were skipped.

        Sign shards are unpacked; relay shards are decoded and turned into signs by the same function an owner uses
        (this node's own slot is its own contribution, which it did not download), written into ``out`` where given
        (see ShardSigns.signs). Raises PayloadError if a shard result does not hold what it claims."""
        pieces: list[SignPiece] = []
        skipped = 0
        for shard in self.shards:
            res = shard.result
            if res is None or not shard.ranges:
                skipped += res is None
                continue
            if not res.included:
                continue  # nobody contributed to this shard: no sign step here (weight decay still applies)
            if res.mode == spb.EXCHANGE_SIGN:
                update = unpack_signs(res.sign_bits, res.nonzero_blocks, layout, shard.ranges)
            else:
                update = signs.signs(self._relayed(shard, layout, run_id, me), out=out)
            pieces.extend((b, start, s) for b, (start, s) in update.items())
        return pieces, skipped

    def _relayed(self, shard: ShardOutcome, layout: Layout, run_id: str, me: bytes) -> list[Contribution]:
        res = shard.result
        assert res is not None
        if len(res.relayed) != len(res.included):
            raise PayloadError("coverage", f"shard of {shard.owner.hex()[:12]} relays {len(res.relayed)} payloads "
                               f"for {len(res.included)} contributions")
        out = []
        for inc, data in zip(res.included, res.relayed):
            if inc.sender == me:
                if self.contribution is None:
                    raise PayloadError("sender", f"shard of {shard.owner.hex()[:12]} includes a contribution this "
                                       "node did not send")
                out.append(restrict(self.contribution, shard.ranges))
                continue
            decoded = decode(data, layout, run_id=run_id, round=self.round, expect=shard.ranges)
            if decoded.sender != inc.sender:
                raise PayloadError("sender", f"shard of {shard.owner.hex()[:12]} relays a payload of another sender")
            out.append(decoded.contribution)
        return out


def restrict(contribution: Contribution, ranges: dict[int, tuple[int, int]]) -> Contribution:
    """The part of a contribution that covers ``ranges`` (an owner's blocks)."""
    parts = {b: contribution.parts[b].blocks(start, stop) for b, (start, stop) in ranges.items()}
    return Contribution(parts, contribution.samples)
