"""The round loop's books on their own (swarm/books.py): which rounds peers may speak of, what goes when, and which
signed statements vouch for a state transfer."""

import asyncio
import dataclasses

from demo_node.crypto import Identity
from demo_node.limits import LIMITS
from demo_node.swarm.books import RoundBooks
from demo_node.swarm.membership import Statements
from demo_node.swarm.plan import Member
from demo_node.swarm.signing import open_statement, sign
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

IDS = sorted((Identity.generate()[0] for _ in range(3)), key=lambda i: i.peer_id)
PEERS = [i.peer_id for i in IDS]
RUN = "run"
LIMITS_SHORT = dataclasses.replace(LIMITS, keep_rounds=4, keep_seconds=0.0, audit_rounds_kept=2, rounds_ahead=2)


def books() -> RoundBooks:
    return RoundBooks(LIMITS_SHORT, num_params=1000, payload_bytes=100)


def statements_of(r: int, digests: dict[int, int]) -> Statements:
    """Round ``r``'s statements: peer index -> the round its digest is of."""
    st = Statements()
    for i, digest_round in digests.items():
        signed = sign(IDS[i], spb.Statement(peer=PEERS[i], run_id=RUN, round=r, digest_round=digest_round,
                                            digest=bytes([digest_round]) * 16).SerializeToString())
        st.add(signed, open_statement(signed, run_id=RUN))
    return st


def test_peers_may_speak_of_the_rounds_kept_and_a_few_ahead():
    b = books()
    b.round = 20
    assert [r for r in range(10, 30) if b.in_window(r)] == list(range(16, 23))


def test_eviction_drops_what_is_older_than_the_rounds_kept_and_forgets_peers_that_left():
    b = books()
    for r in range(12):
        b.members[r] = [Member(p) for p in PEERS]
        b.statements[r] = Statements()
        for p in PEERS:
            b.received[(r, p)] = spb.ShardResult()
            b.kept_for_audit[(r, p)] = spb.Signed()
    b.members[12] = [Member(PEERS[0]), Member(PEERS[1])]  # the third is not in the next round
    b.peer_rounds = {p: 11 for p in PEERS}
    b.evict(11)
    assert sorted(b.members) == list(range(7, 13)) and sorted(b.statements) == list(range(7, 12))
    assert sorted({r for r, _ in b.received}) == list(range(7, 12))
    assert sorted({r for r, _ in b.kept_for_audit}) == [10, 11]  # payloads for audits: audit_rounds_kept
    assert set(b.peer_rounds) == set(PEERS[:2])


def test_a_state_transfer_is_vouched_for_by_the_statements_of_its_round_and_the_next_two():
    b = books()
    b.statements[5] = statements_of(5, {0: 5, 1: 4})  # peer 1 reported an older round here
    b.statements[6] = statements_of(6, {0: 6, 1: 5})  # ... and round 5 a round later
    b.statements[8] = statements_of(8, {2: 5})  # three rounds later: too late to count
    vouching = [open_statement(s, run_id=RUN) for s in b.vouching(5)]
    assert sorted(st.peer for st in vouching) == PEERS[:2]
    assert all(st.digest_round == 5 for st in vouching)
    assert b.vouching(7) == []


def test_a_requester_a_round_ahead_waits_for_the_round_to_open_and_no_longer():
    b = books()
    b.round = 3

    async def scenario():
        loop = asyncio.get_running_loop()
        began = loop.time()
        await b.wait_open(5, timeout=0.2)  # never opens: the wait ends at its timeout
        waited = loop.time() - began
        opener = loop.call_later(0.05, lambda: b.round_open.setdefault(4, asyncio.Event()).set())
        began = loop.time()
        await b.wait_open(4, timeout=5.0)  # opens soon: the wait ends then
        opener.cancel()
        return waited, loop.time() - began

    waited, opened = asyncio.run(scenario())
    assert 0.15 <= waited < 4.0 and opened < 4.0  # generous: a loaded machine; the second would take 5 s unopened
    assert asyncio.run(_immediate(b)) < 4.0  # a round not ahead of this node is not waited for


async def _immediate(b: RoundBooks) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    await b.wait_open(2, timeout=5.0)
    return loop.time() - began
