"""Validation of this project's DHT records (hivemind's record-validator mechanism), on every node that stores or
reads them, so that a junk record is dropped wherever it arrives and nobody can overwrite another peer's record.

Records are recognised by their subkey: ``dn-peer:<peer id>`` (a peer's record in a run) must be signed by that peer
(over key, subkey, value and expiration, so an old record cannot be given a new life) and hold what a peer record
holds; ``dn-run:<run id>`` (a run's config) must hash to its run id. Other records are not this project's and pass.
The signature travels at the end of the value: value, signature, public key, their two lengths, a 4-byte tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter, OrderedDict
from typing import Any

from hivemind.dht.validation import DHTRecord, RecordValidatorBase
from hivemind.p2p import PeerID
from hivemind.utils.serializer import MSGPackSerializer

from demo_node.crypto import Identity, verify
from demo_node.run_identity import run_id

log = logging.getLogger(__name__)
PEER_PREFIX, RUN_PREFIX = "dn-peer:", "dn-run:"
TAG = b"DNS1"
MAX_VALUE_BYTES = 1 << 14
"""A peer or run record is a few hundred bytes: anything larger is junk."""
VALID_CACHE = 4096
"""How many records found valid a node remembers (a swarm of N nodes keeps about N + 1 records alive)."""
STATES = ("starting", "joining", "training", "leaving", "left")


def _subkey(record: DHTRecord) -> str | None:
    try:
        subkey = MSGPackSerializer.loads(record.subkey)
    except Exception:
        return None
    return subkey if isinstance(subkey, str) else None


def _signed_part(record: DHTRecord, value: bytes) -> bytes:
    return MSGPackSerializer.dumps((record.key, record.subkey, value, record.expiration_time))


def split_signature(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(inner value, signature, public key) of a signed value, or None."""
    if len(value) < 8 or value[-4:] != TAG:
        return None
    sig_len = int.from_bytes(value[-8:-6], "big")
    key_len = int.from_bytes(value[-6:-4], "big")
    end = len(value) - 8
    if sig_len + key_len > end:
        return None
    return value[: end - sig_len - key_len], value[end - sig_len - key_len : end - key_len], value[end - key_len : end]


def valid_peer_value(value: Any) -> bool:
    """A peer record's content: its addresses, client flag, round and state."""
    return (isinstance(value, dict) and set(value) == {"maddrs", "client", "round", "state"}
            and isinstance(value["maddrs"], list) and len(value["maddrs"]) <= 32
            and all(isinstance(a, str) and len(a) <= 512 for a in value["maddrs"])
            and isinstance(value["client"], bool) and isinstance(value["round"], int) and value["round"] >= 0
            and value["state"] in STATES)


class RecordValidator(RecordValidatorBase):
    def __init__(self, identity: Identity):
        self.identity = identity
        self._me = PEER_PREFIX + PeerID(identity.peer_id).to_base58()
        self._lock = threading.Lock()
        self.rejected: Counter[str] = Counter()
        """Records dropped, by why (the node's metrics read it)."""
        self._valid: OrderedDict[bytes, None] = OrderedDict()
        """Hashes of records already found valid: every node reads and stores the same records again every few
        seconds, and checking a signature or a run's hash each time costs more than the rest of the DHT's work."""

    def _reject(self, why: str) -> bool:
        with self._lock:
            self.rejected[why] += 1
        log.debug("dropped a DHT record: %s", why)
        return False

    def validate(self, record: DHTRecord) -> bool:
        subkey = _subkey(record)
        if subkey is None or not subkey.startswith((PEER_PREFIX, RUN_PREFIX)):
            return True  # not one of ours
        if len(record.value) > MAX_VALUE_BYTES:
            return self._reject("oversized")
        # the check depends on these bytes only: the same bytes found valid once are valid again
        seen = hashlib.sha256(b"\0".join([record.key, record.subkey, record.value,
                                          repr(record.expiration_time).encode()])).digest()
        with self._lock:
            if seen in self._valid:
                self._valid.move_to_end(seen)
                return True
        ok = self._check(subkey, record)
        if ok:
            with self._lock:
                self._valid[seen] = None
                if len(self._valid) > VALID_CACHE:
                    self._valid.popitem(last=False)
        return ok

    def _check(self, subkey: str, record: DHTRecord) -> bool:
        if subkey.startswith(RUN_PREFIX):
            return self._validate_run(subkey[len(RUN_PREFIX):], record.value)
        parts = split_signature(record.value)
        if parts is None:
            return self._reject("unsigned")
        inner, signature, public_key = parts
        try:
            peer = PeerID.from_base58(subkey[len(PEER_PREFIX):]).to_bytes()
        except Exception:
            return self._reject("bad_peer_id")
        if not verify(peer, _signed_part(record, inner), signature, public_key):
            return self._reject("bad_signature")
        try:
            value = MSGPackSerializer.loads(inner)
        except Exception:
            return self._reject("malformed")
        return True if valid_peer_value(value) else self._reject("schema")

    def _validate_run(self, claimed: str, value_bytes: bytes) -> bool:
        try:
            text = MSGPackSerializer.loads(value_bytes)
            config = json.loads(text)
            ok = isinstance(config, dict) and all(isinstance(v, dict) for v in config.values()) and \
                run_id(config) == claimed
        except Exception:
            ok = False
        return True if ok else self._reject("run_hash")

    def sign_value(self, record: DHTRecord) -> bytes:
        if _subkey(record) != self._me:
            return record.value
        signature = self.identity.sign(_signed_part(record, record.value))
        key = self.identity.key_for_signatures
        return record.value + signature + key + len(signature).to_bytes(2, "big") + len(key).to_bytes(2, "big") + TAG

    def strip_value(self, record: DHTRecord) -> bytes:
        subkey = _subkey(record)
        if subkey is None or not subkey.startswith(PEER_PREFIX):
            return record.value
        parts = split_signature(record.value)
        return record.value if parts is None else parts[0]

    @property
    def priority(self) -> int:
        return 10
