"""The joining sequence: the run's definition, settling which run this node trains with the runs its peers train, and
downloading the parameters from a peer of the run (also used to resync after a digest mismatch)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from demo_node.errors import DemoNodeError
from demo_node.net.host import peer_from_b58
from demo_node.node.config import SwarmConfig
from demo_node.node.peer import GreetedPeer, Peer
from demo_node.node.replica import InstallError, Replica
from demo_node.options import as_dict
from demo_node.run_identity import check_same, differences, run_id
from demo_node.swarm.discovery import PeerRecord
from demo_node.swarm.plan import Member
from demo_node.swarm.standing import Standing
from demo_node.swarm.state_sync import Snapshot, fetch_state, vouched

log = logging.getLogger(__name__)


class JoinError(DemoNodeError, RuntimeError):
    """The node cannot join or go on; the message says why."""


def settle_run(runs: Mapping[str, Mapping[str, Any]], mine: Mapping[str, Mapping[str, Any]],
               wanted_id: str = "") -> str:
    """The id of the run this node trains, given the runs announced (run id -> config) and this node's config.

    With ``wanted_id``, that run must be announced with this config or be this config's own id; otherwise the run of
    this config's name is joined if its config is this one, and founded if no run has that name. A differing config
    raises ConfigMismatch naming every differing field."""
    mine_id = run_id(mine)
    if wanted_id:
        if wanted_id in runs:
            check_same(mine, runs[wanted_id])
            return wanted_id
        if wanted_id != mine_id:
            raise JoinError(f"run {wanted_id} is not announced by any peer (runs seen: {sorted(runs) or 'none'})")
        return mine_id
    name = mine["run"]["run_name"]
    same_name = {rid: c for rid, c in runs.items()
                 if isinstance(c.get("run"), dict) and c["run"].get("run_name") == name}
    if not same_name or mine_id in same_name:
        return mine_id
    check_same(mine, sorted(same_name.items())[0][1])  # raises, naming the differing fields
    return mine_id


RESERVED_SECTIONS = ("optimizer", "defense", "params")
"""Sections of the run's config that the optimizer writes itself."""


def define_run(cfg: SwarmConfig, params: list, extra: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The run's definition: its name, DeMo's options, the defenses, the parameters' shapes, and the caller's
    sections (``extra``: what the options cannot see, the model and the data)."""
    shapes = [(tuple(p.shape), str(p.dtype)) for p in params]
    run: dict[str, dict[str, Any]] = {
        "run": {"run_name": cfg.run.run_name},
        "optimizer": as_dict(cfg.optimizer),
        "defense": as_dict(cfg.defense),
        "params": {"count": sum(p.numel() for p in params),
                   "shapes": hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]},
    }
    for section, items in extra.items():
        if section in RESERVED_SECTIONS:
            raise ValueError(f"run_config: section {section!r} is the optimizer's own")
        if section == "run" and "run_name" in items:
            raise ValueError("run_config: give the run's name as run_name=, not in run_config")
        run.setdefault(section, {}).update(dict(items))
    return run


def refuse_other_runs(greeted: list[GreetedPeer], name: str, wanted_id: str = "") -> None:
    """JoinError when the peers given with --peers train runs, none of them this node's (``name``, or ``wanted_id``):
    a node must not found a run of its own next to the peers it was told to join, and train alone."""
    theirs: dict[str, str] = {}
    for g in greeted:
        try:
            config = json.loads(g.run_config) if g.run_config else None
        except ValueError:
            continue
        if isinstance(config, dict) and isinstance(config.get("run"), dict):
            theirs[run_id(config)] = str(config["run"].get("run_name", ""))
    if not theirs or (wanted_id in theirs if wanted_id else name in theirs.values()):
        return
    runs = ", ".join(f"{n!r} ({rid})" for rid, n in sorted(theirs.items()))
    first = sorted(theirs.values())[0]
    wanted = f"run {wanted_id}" if wanted_id else f"run {name!r}"
    raise JoinError(f"the peers given with --peers train {runs}, not {wanted}: give --run-name {first} to join "
                    "them (or no --peers to found a run of your own)")


@dataclass
class Downloaded:
    round: int
    """The first round whose update is not in the installed parameters."""
    members: list[Member]
    """The members of that round."""
    source: str
    standing: Standing
    """The books of who may own shards, as of that round."""


def _failed(errors: list[str], source: str, why: str) -> None:
    log.warning("could not take the parameters of %s: %s", source, why)
    errors.append(f"{source}: {why}")


def _same_run(snap: Snapshot, run_config: Mapping[str, Any]) -> bool:
    try:
        theirs = json.loads(snap.run_config)
    except ValueError:
        return False
    return isinstance(theirs, dict) and not differences(run_config, theirs)


def download(peer: Peer, replica: Replica, sources: list[PeerRecord], min_round: int,
             run_config: Mapping[str, Any], run: str,
             on_header: Callable[[Downloaded], Awaitable[None]] | None = None,
             members: set[bytes] | None = None) -> Downloaded:
    """Download the parameters from the first source that serves a state of this run at ``min_round`` or later
    whose bytes hash to the digest most of its members signed, and install them (a bad download leaves the
    parameters untouched). Sources are tried in order: the peers the user named come first.

    ``on_header`` (run on the network thread) learns each transfer's round and members before its tensors come:
    the round loop follows the swarm from there, so a download that takes many rounds leaves no gap to catch up.

    Who may vouch for a state, and how many must, come from what this node knows by itself: ``members`` (the other
    members of a round it ran, when it resyncs) or else the sources' own records."""
    errors = []
    servers = [p for p in sources if not p.client]
    # how many must vouch comes from what this node knows of the run, never from the server
    if members:
        need, known = min(2, len(members)), set(members)
    else:
        need = 2 if sum(p.state == "training" for p in sources) >= 2 else 1
        known = {peer_from_b58(p.peer_b58) for p in sources}
    for p in servers:

        async def header(snap: Snapshot, source: str = p.peer_b58) -> None:
            # the round loop is steered by the header only once the members' statements in it vouch for its round
            # and digest, as the whole snapshot must be before it is installed
            if on_header is not None and snap.next_round >= min_round and _same_run(snap, run_config) \
                    and not vouched(snap, run, need, known):
                await on_header(Downloaded(snap.next_round, snap.members, source, snap.standing))

        try:
            snap = peer.host.call(fetch_state(peer.transport, peer_from_b58(p.peer_b58), min_round, replica.sizes(),
                                              peer.limits, on_header=header), timeout=peer.limits.state_total_timeout)
        except Exception as exc:
            _failed(errors, p.peer_b58, repr(exc))
            continue
        if not _same_run(snap, run_config):
            _failed(errors, p.peer_b58, "another run config")
            continue
        if snap.next_round < min_round:
            _failed(errors, p.peer_b58, f"a state of round {snap.next_round}, needed {min_round}")
            continue
        why = vouched(snap, run, need, known)
        if why:
            _failed(errors, p.peer_b58, why)
            continue
        try:
            replica.install(snap.tensors, snap.digest, snap.next_round)
        except InstallError as exc:
            _failed(errors, p.peer_b58, str(exc))
            continue
        return Downloaded(snap.next_round, snap.members, p.peer_b58, snap.standing)
    raise JoinError("could not get the parameters from any peer: " + ("; ".join(errors) or "no peer to ask"))
