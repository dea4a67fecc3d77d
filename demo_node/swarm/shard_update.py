"""The update an owner's result carries, in every exchange mode that has one: where it sits in a signed body or
verdict, how an owner computes it, and how a verifier (or any node holding the signed inputs) judges it.

Sign exchange carries the update's signs (one bit per parameter and one per block); sparse exchange carries the
aggregate's cut (see shard_cut.py). Relay exchange carries none: every node aggregates the relayed payloads itself.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from demo_node.core.contribution import Contribution
from demo_node.core.layout import Layout
from demo_node.swarm.config import RELAY, SIGN, SPARSE
from demo_node.swarm.shard_cut import compute_cut, judge_cut
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb
from demo_node.wire.signs import pack_signs, unpack_signs

MODE_CODES = {RELAY: spb.EXCHANGE_RELAY, SIGN: spb.EXCHANGE_SIGN, SPARSE: spb.EXCHANGE_SPARSE}
RECOMPUTED = (SIGN, SPARSE)
"""Modes in which the owner computes the update and its verifier recomputes it."""
TIE = 1e-4
"""A sign may differ from the recomputation where |value| <= TIE x the largest |value| of its block."""


class Update(NamedTuple):
    """A shard's update as a body or a verdict carries it (the fields of the other modes empty)."""

    sign_bits: bytes = b""
    nonzero_blocks: bytes = b""
    cut: bytes = b""


def mode_code(mode: str) -> int:
    """The ExchangeMode of a plan's mode."""
    return MODE_CODES[mode]


def update_of(msg: spb.ShardBody | spb.VerdictBody) -> Update:
    return Update(msg.sign_bits, msg.nonzero_blocks, msg.cut)


def put(msg: spb.ShardBody | spb.VerdictBody, update: Update) -> None:
    msg.sign_bits, msg.nonzero_blocks, msg.cut = update


def compute(mode: str, signs: ShardSigns, contributions: Sequence[Contribution], layout: Layout,
            ranges: dict[int, tuple[int, int]], *, run_id: str, round: int, owner: bytes) -> Update:
    """An owner's update of its shard from the contributions it included."""
    if mode == SPARSE:
        return Update(cut=compute_cut(signs, contributions, layout, run_id=run_id, round=round, owner=owner))
    return Update(*pack_signs(signs.signs(contributions), ranges))


def judge(mode: str, signs: ShardSigns, contributions: Sequence[Contribution], layout: Layout,
          ranges: dict[int, tuple[int, int]], claimed: Update, *, run_id: str, round: int,
          owner: bytes) -> tuple[bool, Update]:
    """Whether ``claimed`` is the update of ``contributions`` (up to ties), and the update they give."""
    if mode == SPARSE:
        ok, cut = judge_cut(signs, contributions, layout, run_id=run_id, round=round, owner=owner, ranges=ranges,
                            cut=claimed.cut)
        return ok, Update(cut=cut)
    ok, bits, blocks = judge_signs(signs, list(contributions), layout, ranges, claimed.sign_bits,
                                   claimed.nonzero_blocks)
    return ok, Update(bits, blocks)


def judge_signs(signs: ShardSigns, contributions: list[Contribution], layout: Layout,
                ranges: dict[int, tuple[int, int]], sign_bits: bytes, nonzero: bytes) -> tuple[bool, bytes, bytes]:
    """Whether ``sign_bits``/``nonzero`` are the update of ``contributions`` (up to ties), and the packed signs the
    contributions give."""
    values = signs.values(contributions) if contributions else {}
    truth = {b: (start, torch.sign(v)) for b, (start, v) in values.items()}
    bits, blocks = pack_signs(truth, ranges) if truth else (b"", b"")
    if (bits, blocks) == (sign_bits, nonzero):
        return True, bits, blocks
    try:
        claimed = unpack_signs(sign_bits, nonzero, layout, ranges)
    except PayloadError:
        return False, bits, blocks
    for b, (start, v) in values.items():
        c = claimed.get(b)
        if c is None or c[0] != start or c[1].shape != v.shape:
            return False, bits, blocks
        scale = v.abs().flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny).view(-1, 1, 1)
        differs = c[1].to(v.device) != torch.sign(v)
        if bool((differs & (v.abs() > TIE * scale)).any()):
            return False, bits, blocks
    return True, bits, blocks
