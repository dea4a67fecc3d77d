"""Swarms of real node processes with real p2pd daemons on 127.0.0.1 (NAT port mapping off).

They assert invariants (rounds complete, digests equal, nothing lost) with generous deadlines: two cores are shared
by every process here, so timings are only compared loosely and against the deadline.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest

from tests.swarm_harness import Cluster, NodeProc, joined_round, round_times

pytestmark = pytest.mark.swarm
DEADLINE = 6.0


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def wait_members(nodes: list[NodeProc], count: int, timeout: float = 180) -> int:
    """Wait until every node has applied a round with ``count`` members; returns the latest such round."""
    for n in nodes:
        n.wait(lambda n=n: any(e["members"] == count for e in n.rounds()), timeout, f"a round with {count} members")
    return max(n.last_round() for n in nodes)


def assert_same_digests(nodes: list[NodeProc], rounds: range) -> int:
    """Every node that applied a round as a member has the same digest after it; returns how many rounds matched."""
    checked = 0
    for r in rounds:
        digests = {n.name: n.digest_at(r) for n in nodes if n.digest_at(r) is not None}
        if len(digests) == len(nodes):
            assert len(set(digests.values())) == 1, f"round {r}: digests differ {digests}"
            checked += 1
    return checked


def assert_in_step_after_joining(newcomer: NodeProc, others: list[NodeProc], rounds: int = 5) -> None:
    """From the first round the newcomer applied as a member, every node keeps the same digests."""
    back = joined_round(newcomer)
    nodes = [newcomer, *others]
    for n in nodes:
        n.wait_round(back + rounds, timeout=180)
    assert assert_same_digests(nodes, range(back, back + rounds)) >= rounds - 1


def test_three_nodes_train_loss_falls_digests_equal(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    c = cluster.start("c", a.maddrs)
    start = wait_members([a, b, c], 3)
    for n in (a, b, c):
        n.wait_round(start + 25, timeout=300)
    assert assert_same_digests([a, b, c], range(start, start + 25)) >= 20
    evals = [e["held_out_loss"] for e in a.of("eval")]
    assert evals[-1] < evals[0] - 0.5, evals
    for n in (a, b, c):
        late = [e for e in n.rounds() if start <= e["round"] < start + 25]
        assert sum(e["contributed"] for e in late) >= len(late) // 2, f"{n.name} rarely contributed"
        assert all(e["skipped_shards"] == 0 for e in late)
    # bytes are accounted per peer and kind, and what one node sent the others received
    for n in (a, b, c):
        assert n.terminate() == 0
    totals = {"sent": 0, "received": 0}
    for n in (a, b, c):
        for key, value in n.of("left")[0]["bytes"].items():
            totals[key.rsplit("/", 1)[1]] += value
    assert totals["sent"] > 0
    assert abs(totals["sent"] - totals["received"]) <= 0.01 * totals["sent"], totals


def test_kill9_of_the_founder_keeps_others_within_deadline_and_restart_rejoins(cluster):
    a = cluster.start("a", args=["--checkpoint-every", "2"]).wait_started()
    b = cluster.start("b", a.maddrs)
    c = cluster.start("c", a.maddrs)
    start = wait_members([a, b, c], 3)
    a.wait_round(start + 4)
    a.wait(lambda: bool(a.of("checkpoint")), 60, "a checkpoint")
    a.kill9()  # the node every other one bootstrapped from
    killed_at = max(b.last_round(), c.last_round())
    for n in (b, c):
        n.wait_round(killed_at + 8, timeout=180)
    for n in (b, c):
        times = round_times(n, killed_at, killed_at + 8)
        assert max(times) <= DEADLINE + 15, f"{n.name} round times after the crash: {times}"
        assert n.rounds()[-1]["members"] == 2
    # restart from the last checkpoint with the same identity: it rejoins and matches again
    a2 = cluster.start("a", b.maddrs, args=["--checkpoint-every", "2"])
    a2.wait(lambda: bool(a2.of("joined")), 180, "rejoined")
    assert a2.of("started")[-1]["resumed_round"] is not None
    assert a2.of("started")[-1]["peer"] == a.of("started")[0]["peer"]
    assert_in_step_after_joining(a2, [b, c])


def test_a_node_whose_digest_leaves_the_majority_repairs_itself(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    wait_members([a, b], 2)
    c = cluster.start("c", a.maddrs, args=["--fault-after-rounds", "8"])
    joined = wait_members([a, b, c], 3)
    c.wait(lambda: bool(c.of("fault_injected")), 180, "the injected fault")
    fault = c.of("fault_injected")[0]["round"]
    c.wait(lambda: bool(c.of("diverged")), 120, "noticing the divergence")
    c.wait(lambda: len(c.of("synced")) >= 2, 120, "downloading the majority's parameters")
    time.sleep(3)  # let it settle: a digest it signed before the download must not send it off again
    healed = c.of("synced")[-1]["round"]
    for n in (a, b, c):
        n.wait_round(healed + 5, timeout=180)
    assert c.digest_at(fault) != a.digest_at(fault)  # it did diverge
    assert assert_same_digests([a, b, c], range(healed, healed + 5)) >= 4
    assert a.of("diverged") == [] and b.of("diverged") == []  # the majority did not move
    assert joined > 0 and fault > 0


def test_slow_node_does_not_slow_the_others(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    before = wait_members([a, b], 2)
    a.wait_round(before + 10)
    alone = round_times(a, before, before + 10)
    s = cluster.start("s", a.maddrs, args=["--slowdown", "5"])
    joined = wait_members([a, b, s], 3)
    for n in (a, b, s):
        n.wait_round(joined + 15, timeout=240)
    with_slow = round_times(a, joined + 2, joined + 15)
    assert statistics.median(with_slow) < DEADLINE / 2, with_slow
    assert statistics.median(with_slow) <= 2 * statistics.median(alone) + 1.0, (alone, with_slow)
    assert assert_same_digests([a, b, s], range(joined, joined + 15)) >= 12
    slow_rounds = [e for e in s.rounds() if e["round"] >= joined]
    assert any(e["contributed"] for e in slow_rounds), "the slow node never got a contribution in"


def test_node_joining_at_round_20_catches_up(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    wait_members([a, b], 2)
    a.wait_round(20, timeout=240)
    late = cluster.start("late", b.maddrs)
    late.wait(lambda: bool(late.of("joined")), 180, "joined")
    synced = late.of("synced")[0]
    assert synced["round"] >= 20
    assert late.of("joined")[0]["seconds_since_start"] > 0
    assert_in_step_after_joining(late, [a, b])


def test_bootstrap_node_leaves_and_the_rest_go_on(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    c = cluster.start("c", a.maddrs)
    start = wait_members([a, b, c], 3)
    a.wait_round(start + 3)
    assert a.terminate() == 0
    left = a.of("left")
    assert left and (a.folder / "ckpt").exists() and any((a.folder / "ckpt").iterdir())
    gone_at = left[0]["round"]
    for n in (b, c):
        n.wait_round(gone_at + 10, timeout=180)
        assert n.rounds()[-1]["members"] == 2
    assert assert_same_digests([b, c], range(gone_at + 1, gone_at + 10)) >= 8
    # the swarm still admits newcomers without its founder
    d = cluster.start("d", c.maddrs)
    d.wait(lambda: bool(d.of("joined")), 180, "joined")


def test_second_signal_forces_exit(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    wait_members([a, b], 2)
    # freeze b: a's graceful leave must now wait out the round's deadline for it, so it surely takes seconds
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)
        a.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # signals of one kind are not queued: let the first be handled
        assert a.proc.poll() is None, "the graceful leave was expected to take a while here"
        a.proc.send_signal(signal.SIGTERM)
        begun = time.monotonic()
        assert a.proc.wait(timeout=30) == 130
        assert time.monotonic() - begun < 5
        assert not a.of("left")  # forced: no graceful leave
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)


def test_differing_run_config_is_refused_naming_fields_and_missing_config_is_adopted(cluster):
    a = cluster.start("a").wait_started()
    a.wait_round(1)
    bad = cluster.start("bad", a.maddrs, args=["--lr", "0.01", "--topk", "8"])
    assert bad.proc.wait(timeout=120) == 3
    err = bad.tail()
    assert "optimizer.lr" in err and "optimizer.topk" in err and "0.01" in err
    # another run name than the peers given train: refused, naming their run, instead of founding one alone
    other = cluster.start("other", a.maddrs, args=["--run-name", "mine"])
    assert other.proc.wait(timeout=120) == 3
    assert "--run-name demo" in other.tail() and "'demo'" in other.tail() and not other.of("round"), other.tail()
    plain = cluster.start("plain", a.maddrs, run_args=[])  # no model or optimizer options at all
    plain.wait(lambda: bool(plain.of("joined")), 180, "joined")
    assert plain.of("started")[0]["run_config"] == a.of("started")[0]["run_config"]
    assert plain.of("started")[0]["run_id"] == a.of("started")[0]["run_id"]


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_hivemind_dht_bootstrap_in_loopback_only_namespace(tmp_path):
    """hivemind's own ``hivemind-dht`` as --peers. It always turns NAT port mapping on, so it and our nodes run
    inside a network namespace made here with nothing but loopback up."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    ns = f"demo-node-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    prefix = ["ip", "netns", "exec", ns]
    dht_cmd = None
    cluster = Cluster(tmp_path)
    try:
        subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], check=True)
        links = subprocess.run([*prefix, "ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        hivemind_dht = str(Path(sys.executable).with_name("hivemind-dht"))
        log = open(tmp_path / "hivemind-dht.log", "w")
        dht_cmd = subprocess.Popen([*prefix, hivemind_dht, "--host_maddrs", "/ip4/127.0.0.1/tcp/0"],
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
        maddr = None
        deadline = time.monotonic() + 90
        while maddr is None and time.monotonic() < deadline:
            time.sleep(0.5)
            for word in (tmp_path / "hivemind-dht.log").read_text().split():
                if word.startswith("/ip4/127.0.0.1/tcp/") and "/p2p/" in word:
                    maddr = word.strip("'\",[]")
        assert maddr, (tmp_path / "hivemind-dht.log").read_text()
        a = cluster.start("a", [maddr], prefix=prefix).wait_started()
        a.wait_round(2)
        b = cluster.start("b", [maddr], prefix=prefix)  # finds a through the DHT, not through a's address
        start = wait_members([a, b], 2)
        for n in (a, b):
            n.wait_round(start + 5, timeout=180)
        assert assert_same_digests([a, b], range(start, start + 5)) >= 4
    finally:
        cluster.close()
        if dht_cmd is not None:
            dht_cmd.terminate()
            try:
                dht_cmd.wait(timeout=20)
            except subprocess.TimeoutExpired:
                dht_cmd.kill()
                dht_cmd.wait()
        subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_client_mode_node_contributes_without_owning(cluster):
    a = cluster.start("a").wait_started()
    b = cluster.start("b", a.maddrs)
    c = cluster.start("c", a.maddrs, args=["--client-mode"])
    start = wait_members([a, b, c], 3)
    for n in (a, b, c):
        n.wait_round(start + 8, timeout=180)
    late = [e for e in c.rounds() if e["round"] >= start]
    assert all(e["owners"] == 2 for e in late)
    assert any(e["contributed"] and not e["left_out"] for e in late)
    assert assert_same_digests([a, b, c], range(start, start + 8)) >= 6


def test_overlapped_rounds_on_user_text(cluster, tmp_path):
    text = tmp_path / "corpus"
    text.mkdir()
    for i in range(5):
        (text / f"part{i}.txt").write_text(f"The quick brown fox {i} jumps over the lazy dog. " * 400)
    args = ["--overlap", "--data", str(text)]
    a = cluster.start("a", args=args).wait_started()
    b = cluster.start("b", a.maddrs, args=args)
    start = wait_members([a, b], 2)
    for n in (a, b):
        n.wait_round(start + 15, timeout=180)
    assert assert_same_digests([a, b], range(start, start + 15)) >= 12
    evals = [e["held_out_loss"] for e in a.of("eval")]
    assert evals[-1] < evals[0], evals
    run_a, run_b = a.of("started")[0]["run_config"], b.of("started")[0]["run_config"]
    assert "data" not in run_a["run"], "a path on this machine is not part of the run's definition"
    assert run_a["data"] == run_b["data"] and run_a["data"]["train_tokens"] > 0  # the text's fingerprint is


def test_a_peer_that_leaves_on_sigterm_or_dies_is_gone_from_a_two_node_swarm_within_rounds(cluster):
    """Two nodes, the ordinary first setup. SIGTERM to the second node's whole process group (what timeout,
    systemd and Docker send) makes the same clean leave as Ctrl+C: its p2pd, in a session of its own, outlives the
    signal long enough for the node to say it leaves. A third node that joins and is then killed with -9, daemon and
    all (a machine that lost power), is dropped within a few rounds: the founder's rounds are fast again and it says
    it trains alone."""
    a = cluster.start("a", args=["--checkpoint-every", "1"]).wait_started()
    b = cluster.start("b", a.maddrs, args=["--checkpoint-every", "1"])
    together = wait_members([a, b], 2)
    a.wait_round(together + 8)
    # in step with its peer, every checkpoint is one the swarm vouched for (-m), not now and then
    marks = [e["path"].endswith("-m.pt") for e in a.of("checkpoint") if together + 2 <= e["round"] <= together + 8]
    assert len(marks) >= 6 and all(marks), a.of("checkpoint")
    os.killpg(b.proc.pid, signal.SIGTERM)
    assert b.proc.wait(timeout=60) == 0, b.tail()
    exited = time.time()
    left = b.of("left")
    assert left, b.tail()
    assert exited - left[0]["ts"] < 5, exited - left[0]["ts"]  # it stops its daemon and DHT node promptly
    rounds = [e["round"] for e in b.of("checkpoint")]
    assert len(rounds) == len(set(rounds)), rounds  # the last one is written (and reported) once
    assert "FileNotFoundError" not in b.tail(400) and "closed network connection" not in b.tail(400)
    gone_at = left[0]["round"]
    a.wait(lambda: any(e["round"] > gone_at and e["members"] == 1 for e in a.rounds()), 60, "alone after b left")
    first_alone = next(e["round"] for e in a.rounds() if e["round"] > gone_at and e["members"] == 1)
    assert first_alone <= gone_at + 2, (gone_at, first_alone)
    for pid in b.p2pd_pids:  # it stopped its daemon itself
        a.wait(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 30, f"b's p2pd {pid} gone")
    c = cluster.start("c", a.maddrs)
    wait_members([a, c], 2)
    os.killpg(c.proc.pid, signal.SIGKILL)
    c.proc.wait()
    for pid in c.p2pd_pids:  # the kernel ends its daemon with it (it is in a session of its own)
        a.wait(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 30, f"c's p2pd {pid} gone")
    died_at = a.last_round()
    a.wait(lambda: any(e["round"] > died_at and e["members"] == 1 for e in a.rounds()), 60, "c dropped")
    dropped_at = next(e["round"] for e in a.rounds() if e["round"] > died_at and e["members"] == 1)
    assert dropped_at <= died_at + 4, (died_at, dropped_at)
    a.wait_round(dropped_at + 5)
    # (the round it died in may wait for it: it can die after its request reached one owner and before another)
    assert all(e["round_seconds"] < DEADLINE / 2 for e in a.rounds() if e["round"] > died_at + 1), \
        [e["round_seconds"] for e in a.rounds() if e["round"] > died_at]
    assert a.of("alone") and a.proc.poll() is None


def test_max_rounds_means_that_many_rounds_and_the_process_exits_soon_after(cluster):
    """--max-rounds 3: three rounds as a member, the last of them also the leaving round, then exit 0, soon after the
    "left" line (the daemon and the DHT stop in well under the 5-30 s they took)."""
    a = cluster.start("a", args=["--max-rounds", "3"]).wait_started()
    assert a.proc.wait(timeout=120) == 0, a.tail()
    exited = time.time()
    assert a.of("left")[0]["rounds"] == 3 and len(a.rounds()) == 3, [e["round"] for e in a.rounds()]
    assert exited - a.of("left")[0]["ts"] < 5, exited - a.of("left")[0]["ts"]


def test_a_founder_waiting_for_peers_keeps_its_rounds_short(cluster):
    """A founder with --min-members 2 follows its own rounds while it waits: they wait for no gradient (0.5 s, not
    half a deadline), so a joiner's state transfer, which waits for a few of them, is quick."""
    a = cluster.start("a", args=["--min-members", "2"]).wait_started()
    a.wait(lambda: len(a.rounds()) >= 6, 60, "six rounds alone")
    idle = [e["round_seconds"] for e in a.rounds()[1:6]]
    assert statistics.median(idle) < DEADLINE / 4, idle
    b = cluster.start("b", a.maddrs)
    wait_members([a, b], 2)
    assert b.of("joined")[0]["seconds_since_start"] < 30, b.of("joined")
