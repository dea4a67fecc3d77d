"""Hostile peers against a real swarm: two honest nodes and one attacker (tests/adversary.py patches one attack into
an ordinary node), or a raw libp2p peer that sends what no node would. For every attack the honest nodes must go
on: no crash, no hang (rounds within the deadline), no eviction, identical digests, finite parameters, and, where
the attack is on the update, a held-out loss close to a clean run's after as many rounds of training (within 8%: see
LOSS_TOLERANCE)."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import pytest

from demo_node.crypto import Identity
from demo_node.swarm import verifier
from tests.swarm_harness import RUN_ARGS, Cluster, NodeProc, joined_round

pytestmark = pytest.mark.swarm
DEADLINE = 6.0
ROUNDS = 30
FLAT = ["--eval-every", "1", "--compute-seconds", "0.15", "--min-members", "3"]
"""Rounds of a steady length, with training from the first round with all three: a run's rounds are comparable to
a clean run's."""
RUN = [*RUN_ARGS, "--lr-schedule", "constant", "--lr", "1e-3"]
"""The run: at the harness's lr (3e-3) the tiny GPT sits on a plateau near held-out 3.3 for a while and leaves it at
a round that timing decides, so clean runs ended over LOSS_STEPS at 3.14 or at 3.29-3.30 (two of each, measured
here), and an attacked run was compared with luck; at 1e-3 the loss is still falling steadily there: four clean
runs with one set of identities ended within 0.25% of each other (3.8075 to 3.8171), and the two clean runs of each
mode in three runs of this module (each with its own identities) within 0.5% (3.7553 to 3.7895 in all)."""


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


_IDENTITIES: dict[str, bytes] = {}


def same_identity(cluster: Cluster, name: str) -> None:
    """Give the node called ``name`` the identity it has in every test of this module: a node's training data is
    drawn with its peer id as seed, so an attacked run and the clean run it is compared with train on the same data
    (with fresh identities, the data alone moved held-out loss by several percent between runs)."""
    if name not in _IDENTITIES:
        folder = tempfile.mkdtemp(prefix="demo-node-test-id-")
        try:
            Identity.load_or_create(os.path.join(folder, "identity.key"))
            _IDENTITIES[name] = Path(folder, "identity.key").read_bytes()
        finally:
            shutil.rmtree(folder)
    key = cluster.tmp / name / "identity.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(_IDENTITIES[name])
    key.chmod(0o600)


def three(cluster: Cluster, attack: str = "", args: list[str] = (), attacker_joins_first: bool = False,
          run_args: list[str] = (), env: dict | None = None):
    """Two honest nodes and a third (the attacker, if ``attack``); returns (honest, attacker, round all three are in).
    ``run_args``: more options of the run's definition, ``env``: more environment variables, for all three."""
    args, run = [*FLAT, *args], [*RUN, *run_args]
    for name in ("a", "b", "m"):
        same_identity(cluster, name)
    a = cluster.start("a", args=args, run_args=run, env=env).wait_started()
    b = cluster.start("b", a.maddrs, args=args, run_args=run, env=env)
    m = cluster.start("m", a.maddrs, args=args, run_args=run, attack=attack, env=env)
    honest = [a, b]
    for n in (a, b, m):
        n.wait(lambda n=n: any(e["members"] == 3 for e in n.rounds()), 180, "a round with 3 members")
    return honest, m, max(n.last_round() for n in honest)


def assert_unharmed(honest: list[NodeProc], start: int, rounds: int = ROUNDS) -> None:
    """The honest nodes went on together from ``start`` for ``rounds`` rounds."""
    for n in honest:
        n.wait_round(start + rounds, timeout=60 + 4 * rounds * DEADLINE)
    for n in honest:
        assert n.proc.poll() is None, f"{n.name} died"
        window = [e for e in n.rounds(member_only=False) if start <= e["round"] < start + rounds]
        assert all(e["member"] for e in window), f"{n.name} was evicted"
        assert max(e["round_seconds"] for e in window) <= DEADLINE + 10, f"{n.name} hung in a round"
        evals = [e for e in n.of("eval") if e["round"] >= start]
        assert evals and all(e["finite"] for e in evals), f"{n.name} has non-finite parameters"
    matched = 0
    for r in range(start, start + rounds):
        digests = {n.name: n.digest_at(r) for n in honest}
        if None not in digests.values():
            assert len(set(digests.values())) == 1, f"round {r}: {digests}"
            matched += 1
    assert matched >= rounds - 2


def with_three(node: NodeProc, stop: int) -> list[dict]:
    """The node's rounds from the first with all three members (where an attack on the update starts) to ``stop``."""
    rounds = node.rounds()
    first = next(e["round"] for e in rounds if e["members"] == 3)
    return [e for e in rounds if first <= e["round"] < stop]


def peer_hex(node: NodeProc) -> str:
    from demo_node.net.host import peer_from_b58

    return peer_from_b58(node.peer).hex()[-12:]


LOSS_STEPS = (25, 45)
"""Held-out losses after these many rounds of training with all three (counted from the first such round, which
comes a few rounds in and not at the same round in every run) are averaged to compare a run with a clean one."""


def held_out(node: NodeProc) -> float:
    node.wait(lambda: any(e["members"] == 3 for e in node.rounds()), 180, "a round with three members")
    first = next(e["round"] for e in node.rounds() if e["members"] == 3)
    node.wait_round(first + LOSS_STEPS[1], timeout=600)
    evals = [e["held_out_loss"] for e in node.of("eval") if first + LOSS_STEPS[0] <= e["round"] < first + LOSS_STEPS[1]]
    return sum(evals) / len(evals)


def median_round(nodes: list[NodeProc], start: int, rounds: int = ROUNDS) -> float:
    """The median round time of ``nodes`` over rounds [start, start + rounds)."""
    return statistics.median(e["round_seconds"] for n in nodes for e in n.rounds()
                             if start <= e["round"] < start + rounds)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """Held-out loss (see LOSS_STEPS) and median round time of a clean three-node swarm, per exchange mode (computed
    once). One run: two clean runs of one module run (same identities, so the same data) differed by 0.2% to 0.5% in
    loss (RUN's docstring)."""
    cache: dict[str, tuple[float, float]] = {}

    def get(mode: str) -> tuple[float, float]:
        if mode not in cache:
            c = Cluster(tmp_path_factory.mktemp(f"clean-{mode}"))
            try:
                honest, third, start = three(c, args=["--exchange", mode])
                assert_unharmed(honest + [third], start)
                cache[mode] = (sum(held_out(n) for n in honest) / 2, median_round(honest, start))
            finally:
                c.close()
        return cache[mode]

    return get


@pytest.fixture(scope="module")
def clean_loss(clean_run):
    return lambda mode: clean_run(mode)[0]


def report(attack: str, honest: list[NodeProc], start: int, clean: tuple[float, float]) -> float:
    """Print the attacked run's median round time against a clean run's (the README's attack table comes from these
    lines); the ratio."""
    attacked = median_round(honest, start)
    print(f"{attack}: median round {attacked:.3f} s against a clean run's {clean[1]:.3f} s: "
          f"{attacked / clean[1]:.2f}x")
    return attacked / clean[1]


LOSS_TOLERANCE = 1.08
"""How much worse than a clean run an attacked run may end. At the lr of RUN clean runs agree within 0.5%; the attacks
below ended 0.6% to 2.6% above a clean run in two runs of this file and one of the lying-owner tests, so the
hostile-peer issue's 5% would leave a margin of 2.4%: 8% leaves more. This check says that a defense costs little,
not whether an attack got through: flip-signs with verification off (its lies applied every round) ended only 1.0%
above a clean run here (3.8354 against 3.7981). What catches each attack is the protocol's own record that each test
asserts (corrected, demoted, digests)."""


def standing_of(node: NodeProc, peer: str, start: int, stop: int) -> list[dict]:
    """What ``node``'s round lines say about ``peer`` in rounds [start, stop): skips of its shard, benched, demoted."""
    return [{"round": e["round"], "skip": e["skips"].get(peer), "benched": peer in e["benched"],
             "demoted": peer in e["demoted"], "owners": e["owners"]}
            for e in node.rounds() if start <= e["round"] < stop]


def loss_close_to_clean(honest, start, clean: float) -> None:
    attacked = sum(held_out(n) for n in honest) / len(honest)
    print(f"held-out loss {attacked:.4f} against a clean run's {clean:.4f}: {attacked / clean:.4f}")
    assert attacked <= clean * LOSS_TOLERANCE, f"held-out loss {attacked:.3f} against a clean run's {clean:.3f}"


def test_an_owner_that_rewrites_statements_evicts_nobody_and_moves_no_digest(cluster):
    honest, m, start = three(cluster, "forge-statements")
    assert_unharmed(honest, start)
    for n in honest:
        assert not n.of("diverged") and len(n.of("synced")) <= 1  # nobody "repaired" itself towards the attacker
        assert all(e["members"] == 3 for e in n.rounds() if start <= e["round"] < start + ROUNDS)
    assert sum(honest[0].rounds()[-1]["rejects"].values()) > 0


AUDIT_SEED = "0"
"""Audit draws 0.844, 0.758, 0.421, 0.259, ... (random.Random(0)): at half of the rounds audited, a verifier skips
its first two rounds with three members and audits the next two. Every node draws the same sequence, about one draw
per round (each verifies one shard; a round whose result the verifier never got draws nothing, a plan made anew
draws again), so the liar's lies in the first two rounds are applied unaudited (the first of these rounds carries no
contributions here: training starts in the round after the three meet) and its lie in the third is caught, give or
take a round. With draws from the system's entropy, how many lies get through before the first audit is a coin's
count of tails before its first head, and the loss check below would depend on that luck."""


@pytest.mark.parametrize("audit_fraction", [1.0, 0.5], ids=["every-round", "audits-half"])
def test_a_lying_owner_is_caught_corrected_and_demoted(cluster, clean_loss, audit_fraction):
    """With every round verified, or with verifiers auditing half of the rounds (drawn after the owner's result,
    inputs asked of their senders; the draws seeded: see AUDIT_SEED): the owner lies at every shard it owns, and the
    first audit of its shard catches it."""
    honest, m, start = three(cluster, "flip-signs", args=["--exchange", "sign"],
                             run_args=["--audit-fraction", str(audit_fraction)],
                             env={verifier.AUDIT_SEED: AUDIT_SEED} if audit_fraction < 1 else None)
    assert_unharmed(honest, start)
    for n in honest:
        window = with_three(n, start + ROUNDS)
        caught = next((i for i, e in enumerate(window) if e["checks"].get("corrected")), None)
        assert caught is not None, "the lie was never caught"
        before = window[:caught]
        assert not any("recomputed" in e["checks"] for e in before), window[:caught + 1]
        if audit_fraction < 1:  # the first audit caught it (AUDIT_SEED: its third round, give or take a draw)
            assert 1 <= caught <= 4 and all("unaudited" in e["checks"] for e in before), window[:caught + 1]
        else:  # the first round with contributions (those in which the three meet may have none) caught it
            first = next(i for i, e in enumerate(window) if e["contributed"])
            assert caught <= first and not any("unaudited" in e["checks"] for e in before), window[:caught + 1]
        assert window[-1]["demoted"] == [peer_hex(m)]
        checks = {c for e in window for c in e["checks"]}
        assert ("unaudited" in checks) == (audit_fraction < 1), checks
    loss_close_to_clean(honest, start, clean_loss("sign"))


def test_a_lying_owner_in_sparse_exchange_is_caught_corrected_and_demoted(cluster, clean_loss):
    """The owner negates every value of its shard's cut: its verifier recomputes the cut from the signed inputs, every
    honest node applies the verifier's cut instead, and both accuse the owner, which owns nothing more."""
    honest, m, start = three(cluster, "negate-cut", args=["--exchange", "sparse"])
    assert_unharmed(honest, start)
    for n in honest:
        window = with_three(n, start + ROUNDS)
        assert all(e["mode"] == "sparse" for e in window)
        caught = next((i for i, e in enumerate(window) if e["checks"].get("corrected")), None)
        assert caught is not None, "the lie was never caught"
        first = next(i for i, e in enumerate(window) if e["contributed"])
        assert caught <= first and not any("recomputed" in e["checks"] for e in window[:caught]), window[:caught + 1]
        assert window[-1]["demoted"] == [peer_hex(m)]
    loss_close_to_clean(honest, start, clean_loss("sparse"))


def test_a_verifier_that_calls_correct_updates_wrong_is_demoted(cluster, clean_loss):
    honest, m, start = three(cluster, "false-verdicts", args=["--exchange", "sign"])
    assert_unharmed(honest, start)
    for n in honest:
        assert n.rounds()[-1]["demoted"] == [peer_hex(m)], "the false accuser kept its shard"
    loss_close_to_clean(honest, start, clean_loss("sign"))


@pytest.mark.parametrize("attack,mode", [("extreme-weight", "relay"), ("extreme-scale", "sign")])
def test_extreme_weights_and_scales_are_bounded(cluster, clean_loss, attack, mode):
    honest, m, start = three(cluster, attack, args=["--exchange", mode])
    assert_unharmed(honest, start)
    loss_close_to_clean(honest, start, clean_loss(mode))


def test_junk_dht_records_are_dropped_and_a_joiner_still_joins(cluster):
    honest, m, start = three(cluster, "dht-junk")
    time.sleep(3)  # a few heartbeats of junk
    late = cluster.start("late", honest[1].maddrs, args=FLAT, run_args=[])  # adopts the run's config from peers
    late.wait(lambda: bool(late.of("joined")), 180, "joined")
    assert late.of("started")[0]["run_config"]["run"]["model"] == "tiny"
    assert_unharmed(honest + [late], joined_round(late), rounds=10)


def test_a_poisoned_state_is_refused_and_the_joiner_takes_a_vouched_one(cluster):
    honest, m, start = three(cluster, "poison-state")
    late = cluster.start("late", m.maddrs, args=FLAT, run_args=RUN)  # told the attacker: it is asked first
    late.wait(lambda: bool(late.of("joined")), 180, "joined")
    synced = late.of("synced")[0]
    assert synced["source"] != m.peer
    assert "members signed this digest" in late.tail(200)
    assert_unharmed(honest + [late], joined_round(late), rounds=10)


def test_floods_of_streams_frames_and_requests_do_not_stall_the_swarm(cluster):
    """A raw libp2p peer opens many streams that never send, announces frames of gigabytes, asks for rounds far
    away and for snapshots again and again, and sends garbage on every protocol."""
    import asyncio

    from demo_node.net.accounting import Accounting
    from demo_node.net.config import NetworkConfig
    from demo_node.net.host import Host, peer_from_b58
    from demo_node.net.transport import Transport
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest, _, start = three(cluster)
    attacker = Host(NetworkConfig(peers=honest[0].maddrs, listen=["/ip4/127.0.0.1/tcp/0"])).start()
    transport = Transport(attacker, Accounting())
    target = peer_from_b58(honest[0].peer)

    async def flood():
        opened = []
        for kind in ("contribute", "fetch", "inputs", "evidence", "state", "hello"):
            for _ in range(12):  # more than a peer may have open at once: the rest are reset
                try:
                    opened.append(await transport.open(target, kind))
                except Exception:
                    pass
        for s in opened[:20]:  # frames that announce 4 GB
            try:
                s._writer.write((2**32 - 1).to_bytes(4, "big"))
                await s._writer.drain()
            except Exception:
                pass
        for _ in range(20):
            for kind, msg in (("fetch", spb.FetchResult(round=10**15, owner=target)),
                              ("contribute", spb.Contribute(round=10**15)),
                              ("state", spb.StateRequest(min_round=0)), ("inputs", spb.InputsRequest(round=1)),
                              ("evidence", spb.EvidenceRequest(accused=b"x")), ("hello", None)):
                try:
                    await transport.request(target, kind, b"\xff\x00garbage" if msg is None else
                                            msg.SerializeToString(), timeout=5, limit=1 << 20)
                except Exception:
                    pass
        await asyncio.sleep(8)  # hold the idle streams open past a few rounds
        for s in opened:
            await s.close()

    try:
        attacker.call(flood(), timeout=300)
    finally:
        attacker.shutdown()
    assert_unharmed(honest, start, rounds=15)
    rejects = honest[0].rounds()[-1]["rejects"]
    # 72 streams opened one after the other and held: all but 16 are refused at the door, give or take the slots
    # that handler deadlines free on a slow machine (the requests that follow may all meet a full house too, so
    # whether they reach a handler is up to timing)
    assert rejects.get("busy", 0) >= 72 - 2 * 16, rejects


def test_payloads_of_another_sender_or_garbage_are_dropped_and_counted(cluster):
    """A raw peer with a valid signed statement sends garbage payloads and payloads signed by nobody or naming
    another sender; the node refuses each with its reason, and its parameters stay the honest swarm's."""
    from demo_node.net.accounting import Accounting
    from demo_node.net.config import NetworkConfig
    from demo_node.net.host import Host, peer_from_b58
    from demo_node.net.transport import Transport
    from demo_node.swarm.signing import sign
    from demo_node.wire.errors import refusal_name
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest, third, start = three(cluster)
    attacker = Host(NetworkConfig(peers=honest[0].maddrs, listen=["/ip4/127.0.0.1/tcp/0"])).start()
    run_id = honest[0].of("started")[0]["run_id"]
    try:
        transport = Transport(attacker, Accounting())
        target = peer_from_b58(honest[0].peer)

        def send(round: int, payload: spb.Signed | None, statement: spb.Statement | None = None) -> str:
            st = statement or spb.Statement(peer=attacker.peer_id, run_id=run_id, round=round, joining=True)
            msg = spb.Contribute(round=round, statement=sign(attacker.identity, st.SerializeToString()),
                                 payload=payload)
            reply = spb.ShardResult.FromString(attacker.call(transport.request(target, "contribute",
                                                                               msg.SerializeToString(), 60), 90))
            return refusal_name(reply.refusal)

        seen = set()
        cases = [sign(attacker.identity, b"\xff" * 100),                           # not a payload
                 spb.Signed(body=b"\x08\x01", signature=b"\x00" * 64),             # signed by nobody
                 sign(attacker.identity, b"\x08\x01\x12\x03abc")]                  # another run
        for payload in cases:
            for _ in range(20):  # aim at the round about to open (a closed one does not look at payloads)
                reason = send(honest[0].last_round() + 2, payload)
                if reason != "round_closed":
                    break
                time.sleep(0.3)
            seen.add(reason)
        assert seen <= {"malformed", "signature", "run_id", "sender"} and len(seen) >= 2, seen
        # a statement of another peer, signed by the attacker, is refused before anything else
        other = spb.Statement(peer=peer_from_b58(honest[1].peer), run_id=run_id, round=honest[0].last_round() + 1)
        assert send(other.round, None, other) in ("statement", "signature")
    finally:
        attacker.shutdown()
    assert_unharmed(honest + [third], start, rounds=10)


def test_an_owner_that_never_answers_costs_a_short_wait_and_is_benched(cluster, clean_run):
    """The owner takes every contribution to its shard and holds the streams open. The others wait for it about as
    long as the other owners took plus a grace, skip its shard alike (nobody has its result), and bench it after two
    such rounds in a row: it owns nothing for a while (then it is tried again, and benched for twice as long)."""
    honest, m, start = three(cluster, "silent-owner")
    assert_unharmed(honest, start)
    me = peer_hex(m)
    for n in honest:
        seen = standing_of(n, me, start, start + ROUNDS)
        first = next(i for i, e in enumerate(seen) if e["benched"])
        assert first <= 4, seen[:first + 1]  # two rounds of its shard lost, then benched (give or take the start)
        assert all(e["skip"] == "silent" for e in seen[:first] if e["skip"]), seen[:first + 1]
    assert report("silent-owner", honest, start, clean_run("auto")) <= 1.5
    loss_close_to_clean(honest, start, clean_run("auto")[0])


@pytest.mark.parametrize("mode", ["relay", "sign"])
def test_an_owner_that_keeps_only_its_own_contribution_is_skipped_and_demoted(cluster, clean_run, mode):
    """The owner refuses every other contribution as late and aggregates its own alone, negated. The other owners'
    signed results show those contributions were on time: every node skips its update alike (the others get their
    slices back) and demotes it after two such rounds in a row."""
    honest, m, start = three(cluster, "censor", args=["--exchange", mode])
    assert_unharmed(honest, start)
    me = peer_hex(m)
    for n in honest:
        seen = standing_of(n, me, start, start + ROUNDS)
        first = next(i for i, e in enumerate(seen) if e["demoted"])
        assert first <= 4 and all(e["demoted"] for e in seen[first:]), seen
        # (the line of the round at whose end it is demoted still shows that round's skip)
        assert any(e["skip"] == "omitted" for e in seen[:first + 1]), seen
        assert not any(e["skip"] for e in seen[first + 1:]), seen
    report(f"censor ({mode})", honest, start, clean_run(mode))
    loss_close_to_clean(honest, start, clean_run(mode)[0])


def test_an_owner_that_lies_and_withholds_its_input_is_never_applied_and_is_demoted(cluster, clean_run):
    """The owner sends every sign as -1 and keeps its own input from its verifier. The verifier says WITHHELD; the
    nodes ask each other, nobody heard better, so nobody applies the lie; two such rounds in a row (two verifiers:
    they rotate) demote it."""
    honest, m, start = three(cluster, "withhold-and-lie", args=["--exchange", "sign"])
    assert_unharmed(honest, start)
    me = peer_hex(m)
    for n in honest:
        window = with_three(n, start + ROUNDS)
        assert not any(c in e["checks"] for e in window for c in ("unverified", "unaudited")), window
        seen = standing_of(n, me, start, start + ROUNDS)
        first = next(i for i, e in enumerate(seen) if e["demoted"])
        assert first <= 4 and all(e["skip"] in (None, "withheld") for e in seen[:first]), seen
    report("withhold-and-lie", honest, start, clean_run("sign"))
    loss_close_to_clean(honest, start, clean_run("sign")[0])


@pytest.mark.parametrize("mode", ["relay", "sign"])
def test_an_owner_that_signs_two_results_splits_nobody_and_is_demoted(cluster, clean_run, mode):
    """The owner gives every other requester another signed body and reports made-up digests. Its verifier vouches
    for one body: a node that holds the other takes the vouched one (every node applies the same) and accuses it
    with the two bodies; the other checks the evidence and accuses too; it is demoted. Digests never split."""
    honest, m, start = three(cluster, "equivocate", args=["--exchange", mode])
    assert_unharmed(honest, start)
    me = peer_hex(m)
    for n in honest:
        assert not n.of("diverged"), n.of("diverged")
        seen = standing_of(n, me, start, start + ROUNDS)
        first = next(i for i, e in enumerate(seen) if e["demoted"])
        assert first <= 4, seen
    for r in range(start, start + ROUNDS):
        assert honest[0].digest_at(r) == honest[1].digest_at(r), r
    report(f"equivocate ({mode})", honest, start, clean_run(mode))
    loss_close_to_clean(honest, start, clean_run(mode)[0])


def test_two_colluders_that_accuse_every_owner_demote_nobody(cluster):
    """Three honest nodes and two colluders that accuse every other member in every statement and serve made-up
    evidence: the honest nodes check it, it does not hold, they do not accuse; two accusers of five are not most of
    the others, so nobody is demoted and every round is applied by all five owners."""
    for name in ("a", "b", "c", "x", "y"):
        same_identity(cluster, name)
    args, run = [*FLAT[:-1], "5"], RUN
    a = cluster.start("a", args=args, run_args=run).wait_started()
    honest = [a] + [cluster.start(n, a.maddrs, args=args, run_args=run) for n in ("b", "c")]
    liars = [cluster.start(n, a.maddrs, args=args, run_args=run, attack="accuse-all") for n in ("x", "y")]
    for n in honest + liars:
        n.wait(lambda n=n: any(e["members"] == 5 for e in n.rounds()), 240, "a round with 5 members")
    start = max(n.last_round() for n in honest)
    assert_unharmed(honest, start, rounds=20)
    for n in honest:
        window = [e for e in n.rounds() if start <= e["round"] < start + 20]
        assert all(e["members"] == 5 and e["owners"] == 5 and not e["demoted"] for e in window), window
        assert all(e["skipped_shards"] == 0 for e in window), window
        assert "does not hold" in n.tail(400)


def test_a_member_that_stops_costs_a_short_wait_and_comes_back_after(cluster, clean_run):
    """The third node's process is stopped (SIGSTOP: a machine that swaps or a GPU driver that hangs; its p2pd
    stays up and takes the others' streams). The two others drop it within a round or two and go on at their
    clean pace; resumed, it downloads their state and trains with them again."""
    honest, m, start = three(cluster)
    os.kill(m.proc.pid, signal.SIGSTOP)
    try:
        stopped_at = max(n.last_round() for n in honest)
        assert_unharmed(honest, stopped_at)
        for n in honest:
            members = [e["members"] for e in n.rounds() if stopped_at <= e["round"] < stopped_at + ROUNDS]
            assert all(k == 2 for k in members[3:]), members
    finally:
        os.kill(m.proc.pid, signal.SIGCONT)
    assert report("stopped member", honest, stopped_at, clean_run("auto")) <= 1.5
    back = max(n.last_round() for n in honest)
    m.wait(lambda: any(e["round"] > back and e["members"] == 3 for e in m.rounds()), 180, "back in the swarm")
