"""Members behind home routers (benchmarks/natnet.py: masquerading routers that drop what nobody inside asked for,
one of them with random ports per connection): every node is started plainly with the first public node as its
peer, learns by itself whether peers can dial it, and the swarm trains on one digest with the NATed members in it
and owning no shard. Needs root and iptables; traffic stays inside the namespaces the test makes."""

from __future__ import annotations

import pytest

from benchmarks import nat_bench, natnet

pytestmark = [pytest.mark.nat, pytest.mark.skipif(bool(natnet.available()), reason=natnet.available() or "root")]


def test_members_behind_home_routers_find_they_are_private_and_train_with_the_public_ones(tmp_path):
    homes = ["cone", "cone", "symmetric"]
    o = nat_bench.run_setting(5, homes, rounds=6, workdir=tmp_path)
    print(nat_bench.format_result({"behind_nat": o, "all_public": o, "round_time_ratio": 1.0}).split("\nround")[0])
    assert o["reachability"] == {**{f"p{i}": "public" for i in range(1, 5)}, "p0": "unknown",
                                 **{f"h{j}": "private" for j in range(3)}}
    assert o["owns_shards"] == {**{f"p{i}": True for i in range(5)}, **{f"h{j}": False for j in range(3)}}
    assert o["members"] == [8] and o["owners"] == [5]
    assert o["digest_mismatched_rounds"] == []
    # every NATed member contributed: it sent its payloads out through its router each round
    assert all(o["accounted_sent_per_round"][f"h{j}"] > 0 for j in range(3))
    assert sum(o["nat_pairs"].values()) == 3
    assert all(code == 0 for code in o["exit_codes"].values()), o["exit_codes"]
