"""DHT records through which nodes find a run and each other: the run's config, and one record per live peer.

Keys: ``demo-node/runs`` (subkey ``dn-run:<run id>`` -> the run's canonical config, which must hash to the id) and
``demo-node/<run id>/peers`` (subkey ``dn-peer:<peer id>`` -> its addresses, round and state, signed by that peer).
Every node checks them on the way in and out (:mod:`demo_node.net.records`), so a junk or forged record is dropped
wherever it arrives; reading is defensive anyway. Records expire unless refreshed (every few seconds by the
heartbeat), so a crashed peer disappears by itself; a leaving peer overwrites its record with state "left".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from hivemind.dht.node import DHTNode
from hivemind.utils.timed_storage import get_dht_time

from demo_node.net.records import PEER_PREFIX, RUN_PREFIX, valid_peer_value
from demo_node.limits import LIMITS

log = logging.getLogger(__name__)
RUNS_KEY = "demo-node/runs"


@dataclass
class PeerRecord:
    peer_b58: str
    maddrs: list[str]
    client: bool
    round: int
    state: str
    """joining, training or left."""


def _peers_key(run_id: str) -> str:
    return f"demo-node/{run_id}/peers"


async def publish_run(dht: DHTNode, run_id: str, config_json: str, ttl: float = LIMITS.run_ttl) -> bool:
    return await dht.store(RUNS_KEY, config_json, get_dht_time() + ttl, subkey=RUN_PREFIX + run_id)


async def find_runs(dht: DHTNode) -> dict[str, dict]:
    """Run id -> its config (parsed), for every run announced in the DHT."""
    found = await dht.get(RUNS_KEY, latest=True)
    out = {}
    if found is not None and isinstance(found.value, dict):
        for subkey, item in found.value.items():
            if not isinstance(subkey, str) or not subkey.startswith(RUN_PREFIX):
                continue
            try:
                config = json.loads(item.value)
                if not isinstance(config, dict):
                    raise TypeError(type(config).__name__)
                out[subkey[len(RUN_PREFIX):]] = config
            except (TypeError, ValueError, AttributeError):
                log.warning("ignoring a malformed run record %r", subkey[:80])
    return out


async def publish_peer(dht: DHTNode, run_id: str, record: PeerRecord, ttl: float = LIMITS.peer_ttl) -> bool:
    value = {"maddrs": record.maddrs, "client": record.client, "round": record.round, "state": record.state}
    return await dht.store(_peers_key(run_id), value, get_dht_time() + ttl, subkey=PEER_PREFIX + record.peer_b58)


async def find_peers(dht: DHTNode, run_id: str) -> list[PeerRecord]:
    """Live peers of a run (records not expired and not marked left), most advanced round first."""
    found = await dht.get(_peers_key(run_id), latest=True)
    out = []
    if found is not None and isinstance(found.value, dict):
        for subkey, item in found.value.items():
            v = getattr(item, "value", None)
            if not isinstance(subkey, str) or not subkey.startswith(PEER_PREFIX) or not valid_peer_value(v):
                continue
            if v["state"] == "left":
                continue
            out.append(PeerRecord(subkey[len(PEER_PREFIX):], list(v["maddrs"]), v["client"], v["round"], v["state"]))
    return sorted(out, key=lambda r: -r.round)
