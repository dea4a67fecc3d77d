"""Signed messages of the round protocol: statements, payloads, shard bodies and verdicts.

Each is signed by the peer it is from (see :mod:`demo_node.crypto`) and opened here only after its signature checks
out against the peer it claims to be from, so what a node learns about another node always comes from that node.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import DecodeError

from demo_node.crypto import Identity, verify
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

MAX_ACCUSED = 64
"""Accusations one statement may carry."""
MAX_DIGEST_BYTES = 64


class BadSigned(ValueError):
    """A signed message that must be dropped; ``reason`` is a refusal name (signature or statement)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def sign(identity: Identity, body: bytes) -> spb.Signed:
    return spb.Signed(body=body, signature=identity.sign(body), public_key=identity.key_for_signatures)


def signed_by(signed: spb.Signed, peer: bytes) -> bool:
    return verify(peer, signed.body, signed.signature, signed.public_key)


def body_hash(signed: spb.Signed) -> bytes:
    """What identifies a signed message's content (the signature does not: RSA signatures need not be unique)."""
    return hashlib.sha256(signed.body).digest()


def _parse(cls, data: bytes, what: str):
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise BadSigned("statement", f"not a {what}") from None
    return msg


def open_statement(signed: spb.Signed, *, run_id: str, round: int | None = None,
                   peer: bytes | None = None) -> spb.Statement:
    """The statement, once its signature is its own peer's and it speaks of this run (and round, and peer)."""
    st = _parse(spb.Statement, signed.body, "Statement")
    if not st.peer or len(st.peer) > 128:
        raise BadSigned("statement", "a statement without a peer")
    if peer is not None and st.peer != peer:
        raise BadSigned("statement", "a statement of another peer than the one that sent it")
    if st.run_id != run_id or (round is not None and st.round != round):
        raise BadSigned("statement", f"a statement of run {st.run_id[:64]!r} round {st.round}")
    if len(st.digest) > MAX_DIGEST_BYTES or len(st.accused) > MAX_ACCUSED or len(st.plan) > 64:
        raise BadSigned("statement", "an oversized statement")
    if not signed_by(signed, st.peer):
        raise BadSigned("signature", "a statement its peer did not sign")
    return st


def open_payload(signed: spb.Signed, sender: bytes) -> bytes:
    """The payload bytes, once ``sender`` signed them (the payload names its sender too: the decoder checks it)."""
    if not signed_by(signed, sender):
        raise BadSigned("signature", "a payload its sender did not sign")
    return signed.body


def open_body(signed: spb.Signed, owner: bytes, round: int) -> spb.ShardBody:
    """A shard's body, once its owner signed it and it is the body of that owner's shard of that round."""
    body = _parse(spb.ShardBody, signed.body, "ShardBody")
    if body.owner != owner or body.round != round:
        raise BadSigned("statement", "a shard result of another owner or round")
    if not signed_by(signed, owner):
        raise BadSigned("signature", "a shard result its owner did not sign")
    return body


def open_verdict(signed: spb.Signed, verifier: bytes, owner: bytes | None, round: int) -> spb.VerdictBody:
    """A verdict, once its verifier signed it and it judges that owner's shard (any owner's, for None) of that round."""
    verdict = _parse(spb.VerdictBody, signed.body, "VerdictBody")
    if verdict.verifier != verifier or (owner is not None and verdict.owner != owner) or verdict.round != round:
        raise BadSigned("statement", "a verdict of another verifier, owner or round")
    if not signed_by(signed, verifier):
        raise BadSigned("signature", "a verdict its verifier did not sign")
    return verdict
