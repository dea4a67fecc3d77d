"""What a round came to for this node, and the update signs of its shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.swarm.membership import Statements
from demo_node.swarm.owner import read_payload
from demo_node.swarm.plan import Member, RoundPlan
from demo_node.swarm.shard_cut import cut_signs
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.included import inputs_hash
from demo_node.swarm.signing import BadSigned
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import unpack_signs

SignPiece = tuple[int, int, torch.Tensor]
"""(bucket, first block, signs (n, h, w)) of a run of blocks."""


@dataclass
class ShardOutcome:
    owner: bytes
    ranges: dict[int, tuple[int, int]]
    body: spb.ShardBody | None
    """The owner's signed body, opened; None: nobody had the shard's result, every node skips these blocks."""
    relayed: list[spb.Signed] = field(default_factory=list)
    """RELAY: the included signed payloads (this node's own one empty)."""
    sign_bits: bytes = b""
    nonzero_blocks: bytes = b""
    """SIGN: the update to apply: the owner's, or its verifier's where the owner's was proven wrong."""
    source: str = "owner"
    """Where the result came from: the owner, another peer (the owner was unreachable), or none."""
    check: str = ""
    """With a verifier: verified, unverified (no verdict was heard), unaudited (its verifier drew this round out of
    its audits), corrected (the owner lied), withheld (the owner withheld an input: not applied)."""
    senders: list[bytes] = field(default_factory=list)
    """Whose contributions the body includes, in aggregation order."""
    unheard: bool = False
    """The shard's verifier sent no verdict that any member heard (a silent verifier has a fault, as a silent owner
    does)."""
    skip: str = ""
    """Not empty: the update is not applied though there is a result (every node skips it alike), and why:
    silent (the result reached nobody but this node: its verifier says MISSING), withheld (its verifier could not
    check it), omitted (it left out most contributions that were on time)."""
    cut: bytes = b""
    """SPARSE: the cut aggregate to apply sign(IDCT) of: the owner's, or its verifier's where the owner's was proven
    wrong."""

    def included(self, peer: bytes) -> bool:
        """Whether ``peer``'s contribution went into an update that is applied."""
        return self.body is not None and not self.skip and peer in self.senders

    @property
    def applied(self) -> bool:
        return self.body is not None and not self.skip

    @property
    def result(self) -> spb.ShardBody | None:
        return self.body


@dataclass
class RoundOutcome:
    round: int
    plan: RoundPlan
    shards: list[ShardOutcome]
    contribution: Contribution | None
    """This node's contribution sent in this round (None: it sent none)."""
    next_members: list[Member]
    statements: Statements
    seconds: float
    """From the round's opening to its outcome, on this node."""
    leaving: bool = False
    member: bool = True
    """Whether this node was a member of the round (a joiner catching up is not)."""
    refusals: dict[bytes, str] = field(default_factory=dict)
    """Owner -> why it refused or dropped this node's contribution."""
    demoted: set[bytes] = field(default_factory=set)
    """Peers that own no shard for the rest of the run (see demo_node/swarm/standing.py)."""
    benched: dict[bytes, int] = field(default_factory=dict)
    """Peers that own no shard for a while: peer -> the first round they own again."""
    standing_changes: dict[bytes, str] = field(default_factory=dict)
    """Peers benched or demoted at the end of this round (peer -> "benched" / "demoted")."""
    out_of_step: int = 0
    """Not 0: most other owners refused this round as not theirs (too old, too far ahead, or planned otherwise) and
    said they were at this round: the node must download the swarm's state and go on from there."""
    epoch: int = 0
    """The round loop's epoch: it changes when the loop jumps to a downloaded state."""

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

        Sign shards are unpacked; sparse shards' cuts are checked as any payload is and inverted; relay shards are
        checked (each payload signed by its sender, its hash the one the owner signed) and turned into signs by the
        same function an owner uses (this node's own slot is its own contribution, which it did not download);
        written into ``out`` where given (see ShardSigns.signs). Raises PayloadError if a shard result does not hold
        what it claims."""
        pieces: list[SignPiece] = []
        skipped = 0
        for shard in self.shards:
            body = shard.body
            if not shard.applied or not shard.ranges:
                skipped += not shard.applied
                continue
            if not shard.senders:
                continue  # nobody contributed to this shard: no sign step here (weight decay still applies)
            if body.mode == spb.EXCHANGE_SIGN:
                update = unpack_signs(shard.sign_bits, shard.nonzero_blocks, layout, shard.ranges)
            elif body.mode == spb.EXCHANGE_SPARSE:
                update = cut_signs(signs, shard.cut, layout, run_id=run_id, round=self.round, owner=shard.owner,
                                   ranges=shard.ranges, out=out)
            else:
                update = signs.signs(self._relayed(shard, layout, run_id, me), out=out)
            pieces.extend((b, start, s) for b, (start, s) in update.items())
        return pieces, skipped

    def _relayed(self, shard: ShardOutcome, layout: Layout, run_id: str, me: bytes) -> list[Contribution]:
        body = shard.body
        assert body is not None
        if len(shard.relayed) != len(shard.senders):
            raise PayloadError("coverage", f"shard of {shard.owner.hex()[-12:]} relays {len(shard.relayed)} payloads "
                               f"for {len(shard.senders)} contributions")
        if inputs_hash(shard.relayed) != body.inputs_hash:
            raise PayloadError("signature", f"shard of {shard.owner.hex()[-12:]} relays payloads it did not name")
        out = []
        for sender, signed in zip(shard.senders, shard.relayed):
            if sender == me:
                if self.contribution is None:
                    raise PayloadError("sender", f"shard of {shard.owner.hex()[-12:]} includes a contribution this "
                                       "node did not send")
                out.append(restrict(self.contribution, shard.ranges))
                continue
            try:
                out.append(read_payload(signed, sender, layout, run_id, self.round, shard.ranges))
            except BadSigned as exc:
                raise PayloadError("signature", f"shard of {shard.owner.hex()[-12:]} relays a payload {exc}") from None
        return out


def restrict(contribution: Contribution, ranges: dict[int, tuple[int, int]]) -> Contribution:
    """The part of a contribution that covers ``ranges`` (an owner's blocks)."""
    parts = {b: contribution.parts[b].blocks(start, stop) for b, (start, stop) in ranges.items()}
    return Contribution(parts, contribution.samples)
