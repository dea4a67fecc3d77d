"""DHT records through which nodes find a run and each other: the run's config, and one record per live peer.

Keys: ``demo-node/runs`` (subkey: run id -> the run's canonical config) and ``demo-node/<run id>/peers`` (subkey:
peer id -> its addresses, round and state). Records expire unless refreshed (every few seconds by the heartbeat), so
a crashed peer disappears by itself; a leaving peer overwrites its record with state "left".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from hivemind.dht.node import DHTNode
from hivemind.utils.timed_storage import get_dht_time

from demo_node.swarm.limits import LIMITS

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
    return await dht.store(RUNS_KEY, config_json, get_dht_time() + ttl, subkey=run_id)


async def find_runs(dht: DHTNode) -> dict[str, dict]:
    """Run id -> its config (parsed), for every run announced in the DHT."""
    found = await dht.get(RUNS_KEY, latest=True)
    out = {}
    if found is not None and isinstance(found.value, dict):
        for run_id, item in found.value.items():
            try:
                config = json.loads(item.value)
                if not isinstance(config, dict):
                    raise TypeError(type(config).__name__)
                out[str(run_id)] = config
            except (TypeError, ValueError, AttributeError):
                log.warning("ignoring a malformed run record %r", run_id)
    return out


async def publish_peer(dht: DHTNode, run_id: str, record: PeerRecord, ttl: float = LIMITS.peer_ttl) -> bool:
    value = {"maddrs": record.maddrs, "client": record.client, "round": record.round, "state": record.state}
    return await dht.store(_peers_key(run_id), value, get_dht_time() + ttl, subkey=record.peer_b58)


async def find_peers(dht: DHTNode, run_id: str) -> list[PeerRecord]:
    """Live peers of a run (records not expired and not marked left), most advanced round first."""
    found = await dht.get(_peers_key(run_id), latest=True)
    out = []
    if found is not None and isinstance(found.value, dict):
        for peer, item in found.value.items():
            v = item.value
            if not isinstance(v, dict) or v.get("state") == "left":
                continue
            try:
                out.append(PeerRecord(str(peer), [str(a) for a in v["maddrs"]], bool(v["client"]), int(v["round"]),
                                      str(v["state"])))
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed peer record %r", peer)
    return sorted(out, key=lambda r: -r.round)
