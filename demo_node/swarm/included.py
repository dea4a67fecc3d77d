"""Which contributions a shard result includes, in a size that does not grow with the swarm's per-shard overhead:
one bit per member of the round (members in ascending peer-id order) and one hash over the included signed payloads.

A node learns from the bits whether its own contribution went in (else it restores it into its momentum); a
verifier, a relay receiver or a node that recomputes a shard checks the signed payloads it holds against the hash,
and when they differ (a contributor that sent its owner and its verifier two different payloads) asks the owner for
the ones it used: they are signed by their senders, so the owner can withhold them but not make them up. The bits
of a round's results together also show an owner that left out most contributions that were on time (:func:`omitting`).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from demo_node.swarm.signing import body_hash
from demo_node.wire.errors import PayloadError
from demo_node.wire.proto import demo_node_swarm_pb2 as spb


def mask_of(order: Sequence[bytes], senders: Sequence[bytes]) -> bytes:
    """The bits of ``senders`` among ``order`` (the round's member peer ids, ascending)."""
    chosen = set(senders)
    bits = bytearray((len(order) + 7) // 8)
    for i, peer in enumerate(order):
        if peer in chosen:
            bits[i // 8] |= 1 << (i % 8)
    return bytes(bits)


def senders_of(order: Sequence[bytes], mask: bytes) -> list[bytes]:
    """The members whose bits are set, in order; PayloadError for bits that cannot belong to this round."""
    if len(mask) != (len(order) + 7) // 8:
        raise PayloadError("coverage", f"an inclusion mask of {len(mask)} bytes for {len(order)} members")
    senders = [peer for i, peer in enumerate(order) if mask[i // 8] >> (i % 8) & 1]
    if sum(bin(b).count("1") for b in mask) != len(senders):
        raise PayloadError("coverage", "an inclusion mask with bits past the round's last member")
    return senders


def inputs_hash(payloads: Sequence[spb.Signed]) -> bytes:
    """The hash a shard result names for these signed payloads, in this order."""
    h = hashlib.sha256()
    for signed in payloads:
        h.update(body_hash(signed))
    return h.digest()


def omitting(included: dict[bytes, list[bytes]]) -> set[bytes]:
    """The owners whose results leave out most of the contributions that the other owners' results show were on
    time (``included``: owner -> the senders its result includes, for every result of a round). A contribution is on
    time when more than half of the other owners included it (its sender sent it to every owner at once); an owner
    must include more than half of those. Honest owners miss one now and then (a late link), and colluders can make
    one miss theirs (by not sending it), which this allows; an owner that takes only its own contribution, or its
    friends', and refuses the rest as late does not pass. With fewer than three results there is no telling."""
    out = set()
    for owner, mine in included.items():
        others = [set(s) for o, s in included.items() if o != owner]
        if len(others) < 2:
            continue
        on_time = {p for p in set().union(*others) if 2 * sum(p in s for s in others) > len(others)}
        if on_time and 2 * len(on_time & set(mine)) <= len(on_time):
            out.add(owner)
    return out
