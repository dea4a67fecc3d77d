"""A node's libp2p identity and the signatures made with it: key files, peer ids, sign and verify.

A peer id names a public key: for Ed25519 keys (what new identities get) the id *is* the key (an identity multihash
of it), for RSA keys (hivemind's default, older identity files) it is the SHA-256 of it. A signature by a peer is
checked against its peer id alone (Ed25519), or against a public key whose hash is the peer id (RSA), so nobody can
sign for another peer. Keys are stored as libp2p does (a ``PrivateKey`` protobuf: type, data), which p2pd reads
too, so the peer id the network sees is the one that signs. The protobuf framing is two fields, written by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from demo_node.errors import DemoNodeError

log = logging.getLogger(__name__)
RSA, ED25519 = 0, 1
"""libp2p's KeyType values."""
MAX_INLINE_KEY = 42
"""libp2p puts public keys of at most this many bytes (protobuf included) into the peer id itself."""
MAX_PUBLIC_KEY_BYTES = 1 << 12
MAX_SIGNATURE_BYTES = 1 << 10


class IdentityError(DemoNodeError, ValueError):
    """An identity file or key that cannot be used; the message says why."""


# -- the libp2p key protobuf: field 1 = type (varint), field 2 = data (bytes) ----------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise IdentityError("truncated varint in a key")


def encode_key(key_type: int, data: bytes) -> bytes:
    return b"\x08" + _varint(key_type) + b"\x12" + _varint(len(data)) + data


def decode_key(buf: bytes) -> tuple[int, bytes]:
    """(type, data) of a libp2p key protobuf; IdentityError if it is anything else."""
    key_type, data, pos = RSA, None, 0  # proto3 omits a zero type
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        if tag == 0x08:
            key_type, pos = _read_varint(buf, pos)
        elif tag == 0x12:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise IdentityError("truncated key data")
            data, pos = buf[pos : pos + length], pos + length
        else:
            raise IdentityError(f"unexpected field {tag >> 3} in a key")
    if data is None:
        raise IdentityError("a key without data")
    return key_type, bytes(data)


def peer_id_of(public_key_proto: bytes) -> bytes:
    """The libp2p peer id (a multihash) of a public key protobuf."""
    if len(public_key_proto) <= MAX_INLINE_KEY:
        return b"\x00" + _varint(len(public_key_proto)) + public_key_proto
    return b"\x12\x20" + hashlib.sha256(public_key_proto).digest()


def embeds_key(peer_id: bytes) -> bool:
    """Whether the peer id holds its public key (then a signature needs nothing but the id to be checked)."""
    return peer_id[:1] == b"\x00"


# -- verifying ---------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _public_key(peer_id: bytes, public_key_proto: bytes):
    """The key object for a peer id (the proto is needed only when the id does not embed it); None if they do not
    belong together or cannot be read."""
    try:
        if embeds_key(peer_id):
            length, pos = _read_varint(peer_id, 1)
            proto = peer_id[pos:]
            if length != len(proto):
                return None
        else:
            if len(public_key_proto) > MAX_PUBLIC_KEY_BYTES or peer_id_of(public_key_proto) != peer_id:
                return None
            proto = public_key_proto
        key_type, data = decode_key(proto)
        if key_type == ED25519 and len(data) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
        if key_type == RSA:
            key = serialization.load_der_public_key(data)
            return key if isinstance(key, rsa.RSAPublicKey) else None
    except (IdentityError, ValueError, TypeError):
        return None
    return None


def verify(peer_id: bytes, data: bytes, signature: bytes, public_key_proto: bytes = b"") -> bool:
    """Whether ``signature`` is ``peer_id``'s over ``data``. Never raises."""
    if not peer_id or len(signature) > MAX_SIGNATURE_BYTES:
        return False
    key = _public_key(bytes(peer_id), bytes(public_key_proto))
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


# -- this node's own key -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """A private key: this node's peer id and its signatures."""

    key: object
    public_key: bytes
    """The public key as a libp2p protobuf."""
    peer_id: bytes

    @classmethod
    def from_private_proto(cls, proto: bytes) -> "Identity":
        key_type, data = decode_key(proto)
        if key_type == ED25519:
            if len(data) not in (32, 64):
                raise IdentityError(f"an Ed25519 key of {len(data)} bytes")
            key = ed25519.Ed25519PrivateKey.from_private_bytes(data[:32])
            raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        elif key_type == RSA:
            key = serialization.load_der_private_key(data, password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise IdentityError("an RSA key file that holds another kind of key")
            raw = key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        else:
            raise IdentityError(f"key type {key_type} (only RSA and Ed25519 keys are supported)")
        public = encode_key(key_type, raw)
        return cls(key, public, peer_id_of(public))

    @classmethod
    def generate(cls) -> tuple["Identity", bytes]:
        """A new Ed25519 identity and its private key protobuf (seed + public key, as libp2p stores them)."""
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        proto = encode_key(ED25519, seed + pub)
        return cls.from_private_proto(proto), proto

    @classmethod
    def load_or_create(cls, path: str) -> "Identity":
        """The identity in ``path``, created (Ed25519, readable by its owner only) if the file does not exist."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                log.warning("identity file %s can be read by others (mode %o): chmod 600 it", path, mode)
            with open(path, "rb") as f:
                try:
                    return cls.from_private_proto(f.read())
                except (IdentityError, ValueError) as exc:
                    raise IdentityError(f"identity file {path}: {exc}") from None
        identity, proto = cls.generate()
        with os.fdopen(fd, "wb") as f:
            f.write(proto)
            f.flush()
            os.fsync(f.fileno())
        return identity

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @property
    def key_for_signatures(self) -> bytes:
        """What a signed message must carry besides the signature for others to check it: nothing when the peer id
        embeds the key (Ed25519), else the public key."""
        return b"" if embeds_key(self.peer_id) else self.public_key
