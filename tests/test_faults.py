"""Faults a real network and real disks make: a partition that heals, a link limited with tc, a node killed while it
writes a checkpoint, a full disk. The network faults run the nodes in network namespaces this test creates (as
root; skipped otherwise), joined by a bridge in a namespace of their own: nothing touches the host's interfaces."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from benchmarks.netns import Net, sh
from tests.swarm_harness import Cluster, NodeProc

pytestmark = [pytest.mark.swarm, pytest.mark.faults]
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
                                reason="network namespaces, tc and tmpfs mounts need root and iproute2")
FLAT = ["--eval-every", "5", "--compute-seconds", "0.15", "--deadline", "4"]


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def start_in(net: Net, cluster: Cluster, names: list[str], args: list[str]) -> list[NodeProc]:
    nodes = []
    for i, name in enumerate(names):
        peers = nodes[0].maddrs if nodes else []
        node = cluster.start(name, peers, args=[*args, "--listen", net.address(i)], prefix=net.prefix(i))
        if not nodes:
            node.wait_started()
        nodes.append(node)
    for n in nodes:
        n.wait(lambda n=n: any(e["members"] == len(nodes) for e in n.rounds()), 180, "all members")
    return nodes


def same_digests_from(nodes: list[NodeProc], start: int, rounds: int) -> int:
    matched = 0
    for r in range(start, start + rounds):
        digests = {n.name: n.digest_at(r) for n in nodes}
        if None not in digests.values():
            assert len(set(digests.values())) == 1, f"round {r}: {digests}"
            matched += 1
    return matched


@needs_root
def test_a_partition_heals_and_the_cut_off_node_resyncs(cluster):
    net = Net(3)
    try:
        a, b, c = start_in(net, cluster, ["a", "b", "c"], FLAT)
        before = max(n.last_round() for n in (a, b, c))
        net.cut(2)  # c alone on its side
        for n in (a, b):
            n.wait(lambda n=n: any(e["members"] == 2 and e["round"] > before for e in n.rounds()), 120,
                   "going on without c")
        time.sleep(5)
        net.cut(2, up=True)
        healed = max(a.last_round(), b.last_round())

        def back_in_step() -> bool:
            """Six rounds in a row after the heal in which c was a member of three and held a's and b's digest."""
            run = 0
            for e in c.rounds():
                if e["round"] <= healed:
                    continue
                same = e["members"] == 3 and a.digest_at(e["round"]) == e["digest"] == b.digest_at(e["round"])
                run = run + 1 if same else 0
                if run >= 6:
                    return True
            return False

        c.wait(back_in_step, 240, "c back in step with a and b")
        # back by running through the rounds it missed (its peers keep their results) or by taking their state;
        # either way it never trained alone on its side of the cut
        assert not any(e["members"] == 1 and e["member"] for e in c.rounds(member_only=False) if e["round"] > before)
    finally:
        net.close()


@needs_root
def test_a_limited_link_trains_and_its_accounting_agrees_with_the_link(cluster):
    net = Net(2)
    try:
        # 2 mbit/s out of node b's namespace
        net.limit(1, "2mbit")
        a, b = start_in(net, cluster, ["a", "b"], FLAT)
        r0 = b.last_round()
        link0 = net.link_bytes(1)
        acct0 = b.last_round_event()
        b.wait_round(r0 + 15, timeout=240)
        link1 = net.link_bytes(1)
        acct1 = [e for e in b.rounds() if e["round"] >= r0 + 15][0]
        sent_link = link1["sent"] - link0["sent"]
        sent_acct = acct1["bytes_sent"] - acct0["bytes_sent"]
        # the link carries our frames plus libp2p's encryption and multiplexing, TCP/IP headers and the DHT
        assert sent_acct <= sent_link <= 1.5 * sent_acct + 200_000, (sent_acct, sent_link)
        assert same_digests_from([a, b], r0, 15) >= 13
        assert "tbf" in net.qdisc(1)
    finally:
        net.close()


def test_a_node_killed_while_it_writes_a_checkpoint_restarts_from_the_previous_good_one(cluster):
    args = [*FLAT, "--checkpoint-every", "3"]
    a = cluster.start("a", args=args).wait_started()
    b = cluster.start("b", a.maddrs, args=args, attack="slow-checkpoint")
    b.wait(lambda: bool(b.of("checkpoint")), 180, "a finished checkpoint")
    b.wait(lambda: bool(b.of("checkpoint_writing")), 180, "a checkpoint being written")
    b.kill9()
    folder = b.folder / "ckpt"
    assert any(p.name.startswith(".ckpt-") for p in folder.iterdir())  # the torn write's temporary file
    b2 = cluster.start("b", a.maddrs, args=args)
    b2.wait(lambda: bool(b2.of("joined")), 180, "rejoined")
    resumed = b2.of("started")[-1]["resumed_round"]
    assert resumed is not None and resumed <= b.of("checkpoint")[-1]["round"] + 1
    assert not any(p.name.startswith(".ckpt-") for p in folder.iterdir())  # cleaned on start
    # b2 writes to the folder (and the event log) b wrote to: its own rounds are those after its start, and it first
    # follows a round or two without being counted while its download comes in
    since = b2.of("started")[-1]["ts"]
    b2.wait(lambda: any(e["ts"] > since for e in b2.rounds()), 180, "a round as a member after restarting")
    back = next(e["round"] for e in b2.rounds() if e["ts"] > since)
    for n in (a, b2):
        n.wait_round(back + 6, timeout=180)
    assert same_digests_from([a, b2], back, 6) >= 5
    # and the two go on learning: a swarm stalled at the deadline after a restart holds equal digests too
    moved = {a.digest_at(r) for r in range(back, back + 7)} - {None}
    assert len(moved) >= 5, f"a's digests from round {back}: {moved}"


@needs_root
def test_a_full_disk_fails_checkpoints_loudly_and_training_goes_on(cluster, tmp_path):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk))
    try:
        args = [*FLAT, "--checkpoint-every", "2", "--checkpoint-dir", str(disk)]
        a = cluster.start("a", args=[*FLAT]).wait_started()
        b = cluster.start("b", a.maddrs, args=args)
        b.wait(lambda: len(b.of("checkpoint_failed")) >= 2, 180, "failed checkpoints")
        failed_at = b.last_round()
        b.wait_round(failed_at + 6, timeout=120)  # it goes on
        assert any(w in b.of("checkpoint_failed")[0]["error"] for w in ("No space left", "unexpected pos"))
        assert same_digests_from([a, b], failed_at, 6) >= 5
        # nothing half-written left: looked at once b has left (while it trains, a save every 2 rounds may be
        # writing its temporary file at the moment the test looks; a CI run here caught one so)
        b.terminate()
        assert not [p for p in disk.iterdir() if p.name.startswith(".ckpt-")]
    finally:
        sh("umount", str(disk), check=False)
