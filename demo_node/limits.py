"""Every timeout, size cap and retention count of the round protocol and the network under it, named and documented
in one place.

None is a user option: they follow from the protocol (most scale with the round's deadline). Tests may pass smaller
ones to the components that take a ``limits`` argument (:class:`Limits`); the network's and the local services' own
waits, which nothing scales, are the constants at the end.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Limits:
    keep_rounds: int = 16
    """Rounds of closed shards, received results, plans and members kept at least, for peers that catch up or fetch
    late; a request for a round further back than what is kept is refused."""
    keep_seconds: float = 180.0
    """More rounds are kept while they opened within this many seconds: a joiner follows the rounds from the one
    its state download began at, and on a slow link that download (and the results it waits for meanwhile) can
    span many more than ``keep_rounds`` fast rounds..."""
    keep_rounds_max: int = 512
    keep_bytes: int = 256 << 20
    """...up to this many rounds, and this many bytes of shard results (estimated per round from the model's size,
    so a large model keeps ``keep_rounds``)."""
    rounds_ahead: int = 2
    """A request for a round ahead of this node's may be kept waiting for that round to open, but not further
    ahead than this (a peer cannot park requests for round 10**9)."""
    owner_slack: float = 30.0
    """A contributor waits for an owner's answer at most two deadlines plus this many seconds: the owner closes a
    deadline after its first arrival, and that arrival may itself come up to a deadline after the round opened here
    (in practice the wait is cut much shorter once other owners answered: patience_grace, patience_share)."""
    patience_grace: float = 1.0
    """Once half of the peers asked at once (the round's owners, its verifiers, the members asked for a result or a
    verdict) answered, the others get this many seconds..."""
    patience_share: float = 1.0
    """...plus this share of the time those took; then the node goes on without them (a dead, hung or hostile
    peer costs one short wait, scaled to how long healthy peers take, not a multiple of the deadline)."""
    fetch_timeout: float = 10.0
    """Seconds beyond the deadline to wait for peers' answers when asking them for an unreachable owner's result."""
    audit_wait: float = 5.0
    """Seconds an auditing verifier waits for the contributors to serve their own payloads before it asks the owner
    for the rest (so a contributor that holds the request holds up no verdict longer than this)."""
    audit_rounds_kept: int = 4
    """Rounds a contributor keeps its payloads for verifiers that may audit them (an audit follows its round's
    result at once: keeping them as long as results are kept would hold a payload per round for minutes)."""
    own_wait_share: float = 0.5
    """This node waits at most this share of the deadline for its own gradient before it goes without one..."""
    idle_round: float = 0.5
    """...or this many seconds while its training side waits for rounds without stepping (a founder waiting for
    peers: its rounds stay short, so a joiner's state transfer, which waits for a few of them, is quick)."""
    straggler_grace: float = 0.2
    """Once another member's contribution has arrived, this node waits for its own gradient this many seconds..."""
    straggler_grace_share: float = 0.25
    """...plus this share of the time the others took: then it asks for the results without a contribution."""
    adaptive_factor: float = 3.0
    """An adaptive deadline is this many times the largest arrival spread of the recent rounds..."""
    adaptive_window: int = 20
    """...of this many recent rounds..."""
    adaptive_floor: float = 1.0
    """...and never under this many seconds."""
    small_message: int = 1 << 16
    """Bytes a request other than a contribution may have (fetch, state and hello requests)."""
    state_header: int = 1 << 24
    """Bytes a state transfer's header may have (it lists the members and the tensors' sizes)."""
    state_chunk: int = 1 << 20
    """Bytes per frame of a state transfer."""
    state_read_timeout: float = 60.0
    """Seconds a state download may wait for any one frame."""
    state_total_timeout: float = 600.0
    """Seconds a whole state download may take."""
    snapshot_wait: float = 120.0
    """Seconds a state server waits for its node to reach the round a requester needs and for the statements that
    vouch for it, in all (a requester waits this plus state_read_timeout for the header)."""
    greet_patience: float = 120.0
    """Seconds a starting node waits for the peers given with --peers to finish starting (so it never founds a
    second swarm next to a bootstrap that is still starting)."""
    greet_timeout: float = 10.0
    """Seconds to wait for one peer's answer to a greeting."""
    heartbeat: float = 5.0
    """Seconds between refreshes of a node's peer record in the DHT."""
    run_refresh: float = 40.0
    """Seconds between refreshes of the run's record (a third of its lifetime: it carries the whole run config, and
    every refresh goes to several DHT nodes, so refreshing it at every heartbeat cost more bytes than a round)."""
    peers_count_every: float = 30.0
    """Seconds between counts of the run's peer records (the peers-known gauge): each count reads every record."""
    peer_ttl: float = 20.0
    """Seconds a peer record lives unless refreshed: a crashed peer disappears from the DHT after this."""
    run_ttl: float = 120.0
    """Seconds a run record lives unless refreshed."""
    catch_up_interval: float = 5.0
    """Seconds between a lagging joiner's attempts to download a newer state (and between a joiner's first tries)."""
    join_patience: float = 120.0
    """Seconds a joiner keeps trying to download the swarm's parameters before it gives up (a transfer that a busy
    or restarting peer cuts off is tried again)."""
    leave_timeout: float = 10.0
    """Seconds a leaving node spends marking itself left in the DHT and stopping its round loop."""


LIMITS = Limits()


# -- the network layer and the local services -------------------------------------------------------------------
P2PD_STARTUP = 60.0
"""Seconds p2pd may take to start."""
NETWORK_STOP = 15.0
"""Seconds stopping the DHT node and p2pd may take, then the network thread this much less five."""
HANDLER_TIMEOUT = 120.0
"""Seconds any stream handler may run unless its kind says otherwise."""
CLOSE_WAIT = 10.0
"""Seconds a handler waits for the requester to close its end after the reply (closing first could reset the stream
while the last frame is still on its way through the daemons)."""
AUTH_TIMEOUT = 10.0
"""Seconds a peer has to prove it holds the run's swarm key."""
SERVER_IDLE = 60.0
"""Seconds a reused stream may wait at the serving end for its next request before it is closed."""
CLIENT_IDLE = 30.0
"""Seconds a requester keeps an idle stream for its next request (under SERVER_IDLE, so it seldom picks one that the
other end is closing; when it does, the request goes again on a new stream)."""
GREET_RETRY = 1.0
"""Seconds between greetings of bootstrap peers that are still starting."""
WITHDRAW_WAIT = 10.0
"""Seconds the training side waits to take back a contribution that no round took."""
CHECKPOINT_WAIT = 120.0
"""Seconds the control API's Checkpoint call waits for the node's next safe point."""
CONTROL_STOP = 5.0
"""Seconds the control API's server may take to stop (in-flight calls get the first two)."""
