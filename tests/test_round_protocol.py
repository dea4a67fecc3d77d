"""The round protocol in one process: several round drivers on real libp2p hosts (real p2pd on 127.0.0.1), as
hivemind tests its all-reduce, so protocol bugs show without spawning node processes.

Each driver gets its contributions from a DeMo of its own; every round the test checks what the protocol promises:
every node gets the very same result bytes for a shard, applies the same update (identical parameters), and gets
back exactly the part of its contribution that no update included.
"""

from __future__ import annotations

import pytest
import torch

from demo_node.core.optimizer import DeMo
from demo_node.net.accounting import Accounting
from demo_node.net.config import NetworkConfig
from demo_node.net.host import Host
from demo_node.net.transport import Transport
from demo_node.core.digest import digest
from demo_node.swarm.config import RoundConfig
from demo_node.swarm.counters import SwarmCounters
from demo_node.swarm.driver import RoundDriver, RunSettings
from demo_node.swarm.exchange import RoundExchange
from demo_node.limits import Limits
from demo_node.swarm.outcome import RoundOutcome
from demo_node.swarm.plan import Member
from demo_node.swarm.shard_signs import ShardSigns
from demo_node.swarm.shard_update import Update, update_of
from tests.adversary import negated_cut

pytestmark = pytest.mark.swarm
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
FAST = Limits(owner_slack=5.0, fetch_timeout=3.0)


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(64, 96)), torch.nn.Parameter(torch.randn(96)),
            torch.nn.Parameter(torch.randn(8, 4, 3, 3))]


class Node:
    """A driver on a host, with the DeMo whose contributions it sends."""

    def __init__(self, host: Host, mode: str, deadline: float):
        self.host = host
        self.params = make_params()
        self.opt = DeMo(self.params, lr=0.01, topk=8, chunk=32)
        self.signs = ShardSigns(self.opt.layout, "selected")
        self.driver = RoundDriver(Transport(host, Accounting()), self.opt.layout, host.peer_id,
                                  RunSettings(run_id="protocol-test", values="int8", aggregation="selected"),
                                  RoundConfig(deadline=deadline, exchange=mode), SwarmCounters(), FAST)

    def contribute(self, seed: int):
        torch.manual_seed(seed)
        for p in self.params:
            p.grad = torch.randn_like(p)
        return self.driver.hand_over(self.opt.prepare(samples=4))

    def next_outcome(self, timeout: float = 60) -> RoundOutcome:
        return self.driver.outcomes.get(timeout=timeout)

    def apply(self, o: RoundOutcome) -> list:
        pieces, skipped = o.sign_pieces(self.signs, self.opt.layout, "protocol-test", self.host.peer_id)
        self.opt.apply_signs(pieces)
        excluded = list(o.excluded_parts(self.host.peer_id))
        for part in excluded:
            self.opt.restore(part)
        return excluded

    def digest(self) -> bytes:
        return digest(self.params)


@pytest.fixture
def hosts():
    started: list[Host] = []
    first = Host(NetworkConfig(listen=LOOPBACK)).start()
    started.append(first)
    for _ in range(2):
        started.append(Host(NetworkConfig(peers=first.maddrs, listen=LOOPBACK)).start())
    yield started
    for h in started:
        h.shutdown()


def start(hosts: list[Host], mode: str, deadline: float = 30.0, before=lambda nodes: None) -> list[Node]:
    # a round closes once every member's contribution is in, so a long deadline costs nothing where all contribute;
    # a short one failed on a loaded machine (a contribution prepared after 4 s was left out); the tests that need a
    # missing member to time out pass their own
    nodes = [Node(h, mode, deadline) for h in hosts]
    before(nodes)
    members = [Member(h.peer_id) for h in hosts]
    for n in nodes:
        for other in hosts:
            if other is not n.host:
                n.driver.transport.remember(other.peer_id, other.maddrs)
    for n in nodes:
        n.host.call(n.driver.start(0, members, True))
    return nodes


def _the_other_way(update: Update, layout, ranges) -> Update:
    """An owner's lie: its update with every sign flipped, or every value of its cut negated (re-signed by it)."""
    if not update.cut:
        return Update(bytes(b ^ 0xFF for b in update.sign_bits), update.nonzero_blocks)
    return negated_cut(update, layout, ranges)


def stop(nodes: list[Node]) -> None:
    for n in nodes:
        if not n.host.loop.is_closed():
            n.host.call(n.driver.stop(), timeout=10)


@pytest.mark.parametrize("mode", ["relay", "sign", "sparse"])
def test_every_node_gets_the_same_shard_results_and_parameters(hosts, mode):
    nodes = start(hosts, mode)
    try:
        for r in range(4):
            handoffs = [n.contribute(seed=100 * r + i) for i, n in enumerate(nodes)]
            outcomes = [n.next_outcome() for n in nodes]
            assert [o.round for o in outcomes] == [r] * 3
            assert all(h.taken.is_set() for h in handoffs)
            assert all(o.plan.mode == mode and len(o.plan.members) == 3 for o in outcomes)
            # the same included contributions and the same update bits for every shard, on every node
            for shard in range(3):
                results = [o.shards[shard].result for o in outcomes]
                assert all(res is not None for res in results)
                assert len({(res.included, res.inputs_hash) for res in results}) == 1
                assert len({(res.sign_bits, res.nonzero_blocks, res.cut) for res in results}) == 1
                assert bool(results[0].cut) == (mode == "sparse") and bool(results[0].sign_bits) == (mode == "sign")
            for n, o in zip(nodes, outcomes):
                assert n.apply(o) == []  # everything this node sent went into an update
            assert len({n.digest() for n in nodes}) == 1, f"round {r}: replicas differ"
            assert [len(o.next_members) for o in outcomes] == [3, 3, 3]
    finally:
        stop(nodes)


def test_a_node_without_a_gradient_is_left_out_and_gets_its_contribution_back(hosts):
    nodes = start(hosts, "sign", deadline=2.0)
    try:
        for i, n in enumerate(nodes):
            n.contribute(seed=i)
        for n in nodes:
            n.apply(n.next_outcome())
        # round 1: the third node's gradient is not ready; the round closes without it and it stays a member
        for i, n in enumerate(nodes[:2]):
            n.contribute(seed=10 + i)
        outcomes = [n.next_outcome() for n in nodes]
        assert all(o.contribution is None for o in outcomes[2:]) and outcomes[0].contribution is not None
        for o in outcomes:
            senders = {p for s in o.shards for p in s.senders}
            assert senders == {hosts[0].peer_id, hosts[1].peer_id}
        for n, o in zip(nodes, outcomes):
            assert n.apply(o) == []
        assert len({n.digest() for n in nodes}) == 1
        # round 2: its late contribution goes into the next round it opens
        late = nodes[2].contribute(seed=99)
        for i, n in enumerate(nodes[:2]):
            n.contribute(seed=20 + i)
        outcomes = [n.next_outcome() for n in nodes]
        assert outcomes[2].contribution is late.contribution
        for n, o in zip(nodes, outcomes):
            n.apply(o)
        assert len({n.digest() for n in nodes}) == 1
        assert all(len(o.next_members) == 3 for o in outcomes)
    finally:
        stop(nodes)


def test_a_dead_owner_is_fetched_or_skipped_alike_and_leaves_the_membership(hosts):
    nodes = start(hosts, "sign", deadline=2.0)
    try:
        for i, n in enumerate(nodes):
            n.contribute(seed=i)
        for n in nodes:
            n.apply(n.next_outcome())
        dead = nodes.pop()
        dead.host.shutdown()  # its daemon is gone: its shard of the next round has no owner to answer
        for i, n in enumerate(nodes):
            n.contribute(seed=30 + i)
        outcomes = [n.next_outcome(timeout=90) for n in nodes]
        dead_id = dead.host.peer_id
        for o in outcomes:
            shard = next(s for s in o.shards if s.owner == dead_id)
            assert shard.result is None  # nobody got it: both skip its blocks
        excluded = [n.apply(o) for n, o in zip(nodes, outcomes)]
        assert all(len(parts) == 1 for parts in excluded)  # each gets its slice for the dead shard back
        assert len({n.digest() for n in nodes}) == 1
        assert all(sorted(m.peer for m in o.next_members) == sorted(n.host.peer_id for n in nodes) for o in outcomes)
        # the next round runs with the two that are left
        for i, n in enumerate(nodes):
            n.contribute(seed=40 + i)
        outcomes = [n.next_outcome() for n in nodes]
        assert all(len(o.plan.members) == 2 and all(s.result is not None for s in o.shards) for o in outcomes)
        for n, o in zip(nodes, outcomes):
            n.apply(o)
        assert len({n.digest() for n in nodes}) == 1
    finally:
        stop(nodes)


@pytest.mark.parametrize("mode", ["sign", "sparse"])
def test_a_lying_owner_is_caught_by_its_verifier_corrected_and_demoted(hosts, mode):
    def lie(nodes):
        d = nodes[0].driver
        honest_update = d._shard_update

        async def flipped(plan, contributions, ranges):
            # every sign of its shard the other way, or every value of its cut
            return _the_other_way(await honest_update(plan, contributions, ranges), d.layout, ranges)

        d._shard_update = flipped

    nodes = start(hosts, mode, deadline=3.0, before=lie)
    liar = nodes[0]
    try:
        for r in range(3):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            if liar.host.peer_id in outcomes[1].plan.owners:
                # the verifier found it, everyone applies the verifier's signed bits instead
                assert all({s.owner: s.check for s in o.shards}[liar.host.peer_id] == "corrected" for o in outcomes)
                lied = [s for s in outcomes[1].shards if s.owner == liar.host.peer_id][0]
                assert (lied.sign_bits, lied.nonzero_blocks, lied.cut) != tuple(update_of(lied.body))
            else:
                assert r == 2  # the accusations ride in the next round's statements, and count from the one after
            for n, o in zip(nodes, outcomes):
                n.apply(o)
            assert len({n.digest() for n in nodes}) == 1, f"round {r}: replicas differ"
        # both honest nodes accused it with evidence: it owns no shard any more (it still contributes)
        honest = nodes[1:]
        assert all(liar.host.peer_id in n.driver.checker.accused for n in honest)
        last = outcomes[1]
        assert liar.host.peer_id in last.demoted and liar.host.peer_id not in last.plan.owners
        assert len(last.plan.members) == 3
        evidence = honest[0].driver.checker.accused[liar.host.peer_id]
        assert evidence.claim.body and len(evidence.inputs) >= 2
    finally:
        stop(nodes)


def test_an_owner_that_withholds_its_own_input_is_skipped_alike_and_demoted(hosts, monkeypatch):
    """The owner lies and keeps its own input from its verifier (out of the copy it sends, refused when asked): the
    verifier, whichever of the two others it is this round (they rotate), says WITHHELD; the nodes ask each other
    what they heard, none heard better, so no node applies the lie (its blocks are skipped alike, contributions
    restored), and after two such rounds in a row the owner owns nothing more."""
    def withhold(nodes):
        d = nodes[0].driver
        honest_signs, honest_part = d._packed_signs, RoundExchange._verify_part

        async def flipped(contributions, ranges):
            bits, nonzero = await honest_signs(contributions, ranges)
            return bytes(b ^ 0xFF for b in bits), nonzero

        def part(exchange, owner):
            got = honest_part(exchange, owner)
            if exchange.ctx.me == d.me and got is not None and got[0].owner == d.me:
                got[0].ClearField("payload")  # not its own input for its own shard
            return got

        class Withholding(dict):
            def __setitem__(self, r, own):
                served = own.inputs
                own.inputs = lambda senders: [s if p != d.me else type(s)() for p, s in zip(senders, served(senders))]
                super().__setitem__(r, own)

        d._packed_signs, d.books.owner_rounds = flipped, Withholding()
        monkeypatch.setattr(RoundExchange, "_verify_part", part)

    nodes = start(hosts, "sign", deadline=3.0, before=withhold)
    liar = nodes[0].host.peer_id
    try:
        verifiers = set()
        for r in range(3):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            if r < 2:
                assert liar in outcomes[1].plan.owners
                verifiers.add(outcomes[1].plan.verifiers[liar])
                lied = [next(s for s in o.shards if s.owner == liar) for o in outcomes]
                assert all(s.check == "withheld" and s.skip == "withheld" for s in lied), r
                assert all(s.check == "verified" for o in outcomes for s in o.shards if s.owner != liar)
            else:  # two withheld rounds in a row: it owns nothing, every other shard is verified
                assert liar not in outcomes[1].plan.owners and liar in outcomes[1].demoted
                assert all(s.check == "verified" for o in outcomes for s in o.shards)
            excluded = [n.apply(o) for n, o in zip(nodes, outcomes)]
            if r < 2:
                assert all(len(parts) == 1 for parts in excluded)  # each gets its slice of the skipped shard back
            assert len({n.digest() for n in nodes}) == 1, f"round {r}: replicas differ"
        assert len(verifiers) == 2
        assert outcomes[1].standing_changes == {} and not any(n.driver.checker.accused for n in nodes)
    finally:
        stop(nodes)


class _Patched(dict):
    """An attacker's owner rounds: ``patch(own)`` rewrites each one as it is made."""

    def __init__(self, patch):
        super().__init__()
        self.patch = patch

    def __setitem__(self, r, own):
        self.patch(own)
        super().__setitem__(r, own)


def test_an_owner_that_never_answers_costs_a_short_wait_then_owns_nothing(hosts):
    """The owner takes every contribution and holds the streams open: the others wait for it about as long as the
    other owners took plus a grace (not two deadlines and more), skip its shard alike, and after two such rounds in
    a row it is benched (it still contributes)."""
    import asyncio

    def hold(nodes):
        d = nodes[0].driver

        def silent(own):
            answer = own.result_for

            async def result_for(requester):
                if requester != d.me:
                    await asyncio.Event().wait()
                return await answer(requester)

            own.result_for = result_for

        d.books.owner_rounds = _Patched(silent)

    nodes = start(hosts, "sign", deadline=3.0, before=hold)
    silent = nodes[0].host.peer_id
    try:
        for r in range(3):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            honest = outcomes[1:]
            if r < 2:
                for o in honest:
                    assert next(s for s in o.shards if s.owner == silent).result is None
                    assert o.seconds < 2 * 3.0 + FAST.owner_slack - 3, o.seconds  # far below the old wait
            else:
                assert all(silent not in o.plan.owners and silent in o.benched for o in honest)
                assert all(s.result is not None for o in honest for s in o.shards)
                assert all(silent in s.senders for o in honest for s in o.shards)  # it still contributes
            # its own shard too is skipped where it runs: the verifier says nobody had it (MISSING), so the silent
            # owner plans and applies as the others do
            for n, o in zip(nodes, outcomes):
                n.apply(o)
            assert len({n.digest() for n in nodes}) == 1, f"round {r}: replicas differ"
            assert len({o.plan.fingerprint for o in outcomes}) == 1
        assert honest[0].standing_changes == {} and outcomes[1].benched[silent] > 2
    finally:
        stop(nodes)


@pytest.mark.parametrize("mode", ["relay", "sign", "sparse"])
def test_an_owner_that_signs_two_results_has_one_applied_everywhere_and_is_demoted(hosts, mode):
    """The owner gives half of its requesters another body (its own contribution left out) than the rest: its
    verifier vouches for one body, a node holding the other takes the vouched one (every node applies the same) and
    accuses the owner with the two signed bodies; the other honest node checks that evidence and accuses too, and
    with two of two other members accusing it the owner owns nothing more."""
    from demo_node.swarm.owner import OwnerRound
    from demo_node.swarm.signing import sign
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    def equivocate(nodes):
        d = nodes[0].driver
        victim = sorted(n.host.peer_id for n in nodes[1:])[0]

        def two_faced(own: OwnerRound):
            serialize = own.serialize_for

            def serialize_for(requester):
                msg = spb.ShardResult.FromString(serialize(requester))
                if requester != victim or not msg.body.body:
                    return msg.SerializeToString()
                body = spb.ShardBody.FromString(msg.body.body)
                body.sign_bits = bytes(b ^ 0x0F for b in body.sign_bits)
                body.statements.extend(body.statements[:1])  # another body, its relayed payloads unchanged
                msg.body.CopyFrom(sign(d.identity, body.SerializeToString()))
                return msg.SerializeToString()

            own.serialize_for = serialize_for

        d.books.owner_rounds = _Patched(two_faced)

    nodes = start(hosts, mode, deadline=3.0, before=equivocate)
    liar = nodes[0].host.peer_id
    honest = nodes[1:]
    try:
        for r in range(4):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            if liar in outcomes[1].plan.owners:
                bodies = {next(s for s in o.shards if s.owner == liar).result.SerializeToString() for o in outcomes}
                assert len(bodies) == 1, f"round {r}: the owner's two bodies were both applied"
            for n, o in zip(nodes, outcomes):
                n.apply(o)
            assert len({n.digest() for n in honest}) == 1, f"round {r}: replicas differ"
        assert all(liar in n.driver.checker.accused for n in honest)
        assert liar in outcomes[1].demoted and liar not in outcomes[1].plan.owners
        kinds = {n.driver.checker.accused[liar].kind for n in honest}
        # (a verifier that was given the flipped body itself calls it a lie: that is evidence too)
        assert kinds <= {spb.Evidence.BODY_EQUIVOCATION, spb.Evidence.LIE}
    finally:
        stop(nodes)


@pytest.mark.parametrize("mode", ["relay", "sign", "sparse"])
def test_an_owner_that_keeps_only_its_own_contribution_is_skipped_alike_and_demoted(hosts, mode):
    """The owner refuses every other contribution as late and aggregates its own alone: the other owners' signed
    results show those contributions were on time, so every node skips its update (each gets its slice back) and
    after two such rounds in a row it owns nothing more."""
    def censor(nodes):
        d = nodes[0].driver

        def only_mine(own):
            arrive = own.arrive

            def arrive_censored(sender, joining, statement, payload, contribution=None):
                if sender == d.me:
                    return arrive(sender, joining, statement, payload, contribution)
                arrive(sender, joining, statement, None)
                if payload is not None:
                    own.refusals[sender] = "round_closed"

            own.arrive = arrive_censored

        d.books.owner_rounds = _Patched(only_mine)

    nodes = start(hosts, mode, deadline=3.0, before=censor)
    cheat = nodes[0].host.peer_id
    try:
        for r in range(3):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            if r < 2:
                for o in outcomes[1:]:
                    shard = next(s for s in o.shards if s.owner == cheat)
                    assert shard.senders == [cheat] and shard.skip == "omitted"
            else:
                assert all(cheat in o.demoted and cheat not in o.plan.owners for o in outcomes[1:])
            excluded = [n.apply(o) for n, o in zip(nodes[1:], outcomes[1:])]
            if r < 2:
                assert all(len(parts) == 1 for parts in excluded)
            assert len({n.digest() for n in nodes[1:]}) == 1, f"round {r}: replicas differ"
    finally:
        stop(nodes)


def test_a_verifier_that_tells_one_node_withheld_and_another_correct_splits_nobody_and_is_demoted(hosts):
    """The verifier signs WITHHELD for every other requester and CORRECT for the rest: a node told WITHHELD asks the
    others, hears CORRECT, applies the update like them, and holds the two verdicts as evidence; the other honest
    node checks it and accuses too, so the verifier is demoted."""
    from demo_node.swarm.signing import sign
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    def lie(nodes):
        d = nodes[0].driver
        honest = d.handlers._verdict_reply
        count = [0]

        async def reply(vr, refusal):
            data = await honest(vr, refusal)
            count[0] += 1
            if count[0] % 2 or vr is None or vr.verdict is None:
                return data
            body = spb.VerdictBody.FromString(vr.verdict.body)
            body.finding = spb.VerdictBody.WITHHELD
            return spb.VerdictReply(status=spb.ShardResult.HAVE,
                                    verdict=sign(d.identity, body.SerializeToString())).SerializeToString()

        d.handlers._verdict_reply = reply

    nodes = start(hosts, "sign", deadline=3.0, before=lie)
    liar = nodes[0].host.peer_id
    honest = nodes[1:]
    try:
        for r in range(4):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            for o in outcomes[1:]:
                assert not any(s.skip for s in o.shards), f"round {r}: {[(s.check, s.skip) for s in o.shards]}"
            for n, o in zip(nodes, outcomes):
                n.apply(o)
            assert len({n.digest() for n in nodes}) == 1, f"round {r}: replicas differ"
        assert all(n.driver.checker.accused[liar].kind == spb.Evidence.VERDICT_EQUIVOCATION for n in honest)
        assert liar in outcomes[1].demoted
    finally:
        stop(nodes)


def test_a_verifier_that_never_sends_its_verdicts_costs_a_short_wait_then_is_benched(hosts):
    """The verifier holds every verdict (on the contribute streams and when asked for it): the nodes wait a grace,
    ask each other, nobody heard one, so they apply the shard unverified alike; after two such rounds in a row the
    silent verifier is benched like a silent owner (it verifies a shard every round)."""
    import asyncio

    def hold(nodes):
        h = nodes[0].driver.handlers

        async def never(*args):
            await asyncio.Event().wait()

        h._verdict_reply = never
        h._on_verdict = never

    nodes = start(hosts, "sign", deadline=3.0, before=hold)
    silent = nodes[0].host.peer_id
    try:
        for r in range(3):
            for i, n in enumerate(nodes):
                n.contribute(seed=10 * r + i)
            outcomes = [n.next_outcome() for n in nodes]
            honest = outcomes[1:]
            if r < 2:
                for o in honest:
                    shard = next(s for s in o.shards if o.plan.verifiers.get(s.owner) == silent)
                    assert shard.check == "unverified" and shard.unheard and shard.applied
                    assert o.seconds < 2 * 3.0 + FAST.owner_slack - 3, o.seconds
            else:
                assert all(silent in o.benched and silent not in o.plan.owners for o in honest)
            for n, o in zip(nodes[1:], honest):
                n.apply(o)
            assert len({n.digest() for n in nodes[1:]}) == 1, f"round {r}: replicas differ"
    finally:
        stop(nodes)
