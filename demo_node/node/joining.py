"""Finding the run to train before anything is built: greeting the peers given with --peers, and settling this
node's run config against the runs announced by the peers and the DHT."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

from demo_node.config import Config
from demo_node.net.host import Host, peer_b58, peer_from_b58
from demo_node.net.transport import Transport
from demo_node.run_identity import check_same, run_id
from demo_node.swarm.discovery import PeerRecord


class NodeError(RuntimeError):
    """The node cannot start or go on; the message says why."""


@dataclass
class GreetedPeer(PeerRecord):
    run_config: str | None = None
    """The canonical config of the run the peer trains (None while it is still starting)."""


def greet(host: Host, transport: Transport, maddrs: list[str], patience: float = 120.0) -> list[GreetedPeer]:
    """Ask the peers given with --peers who they are. A demo-node that is still starting (its DHT records are not
    out yet) is waited for, so a node started next to its bootstrap never founds a second swarm; a peer that does
    not speak demo-node (a plain hivemind DHT node) is left to the DHT."""
    pending = {peer_from_b58(a.rsplit("/p2p/", 1)[1]): a for a in maddrs if "/p2p/" in a}
    found: dict[bytes, GreetedPeer] = {}
    deadline = time.monotonic() + patience
    while pending and time.monotonic() < deadline:
        for peer, maddr in list(pending.items()):
            try:
                reply = json.loads(host.call(transport.request(peer, "hello", b"hi", timeout=10), 20))
            except Exception:
                del pending[peer]  # unreachable, or not a demo-node
                continue
            found[peer] = GreetedPeer(peer_b58(peer), reply.get("maddrs") or [maddr], bool(reply.get("client")),
                                      int(reply.get("round", 0)), str(reply.get("state")), reply.get("run_config"))
            if reply.get("state") != "starting":
                del pending[peer]
        if pending:
            time.sleep(1.0)
    return list(found.values())


def hello(state: str, cfg: Config, started: bool, maddrs: list[str], round: int) -> bytes:
    """The answer to a greeting: who this node is and which run it trains (nothing while it starts)."""
    from demo_node.run_identity import canonical

    return json.dumps({"state": state, "run_config": canonical(cfg.run_config()) if started else None,
                       "maddrs": maddrs, "client": cfg.client_mode, "round": round if started else 0}).encode()


def resolve_run(cfg: Config, runs: Mapping[str, Mapping[str, Any]]) -> Config:
    """This node's config, given the runs known (run id -> config): with --run-id, that run's; otherwise the run of
    the same name. A node that set run options must match it (ConfigMismatch names every differing field); one
    that set none adopts it; with no such run, this node's config founds one."""
    mine = cfg.run_config()
    if cfg.run_id:
        if cfg.run_id in runs:
            if cfg.run_explicit():
                check_same(mine, runs[cfg.run_id])
                return cfg
            return cfg.with_run_config(runs[cfg.run_id])
        if run_id(mine) != cfg.run_id:
            raise NodeError(f"run {cfg.run_id} is not announced by any peer (runs seen: {sorted(runs) or 'none'})")
        return cfg
    same_name = {rid: c for rid, c in runs.items() if c.get("run", {}).get("run_name") == cfg.run_name}
    if not same_name or run_id(mine) in same_name:
        return cfg
    if cfg.run_explicit():
        check_same(mine, sorted(same_name.items())[0][1])  # raises, naming the differing fields
    if len(same_name) > 1:
        raise NodeError(f"several runs are named {cfg.run_name!r}: {sorted(same_name)}; choose one with --run-id")
    return cfg.with_run_config(next(iter(same_name.values())))
