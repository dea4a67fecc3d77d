"""Members behind home routers (benchmarks/natnet.py: routers that masquerade their home host and drop what nobody
inside asked for; a "symmetric" one gives every connection a port of its own). Every node is started plainly with the
first public node as its peer and learns by itself whether peers can dial it. Behind routers that keep a host's port,
the NATed members get direct connections to each other and to the public nodes, own shards like them and send about
what they send; one member behind a symmetric router reaches nobody directly, so it and the others behind NAT own
nothing and the swarm trains on all the same. Needs root and iptables; traffic stays inside the test's namespaces."""

from __future__ import annotations

import pytest

from benchmarks import nat_bench, natnet

pytestmark = [pytest.mark.nat, pytest.mark.skipif(bool(natnet.available()), reason=natnet.available() or "root")]
PUBLIC = 5
"""Five public nodes: libp2p believes a public address of its own only once four peers saw it."""


def _trained_together(o: dict) -> None:
    assert o["members"] == [o["nodes"]]
    assert o["digest_rounds_checked"] >= 5 and o["digest_mismatched_rounds"] == []
    assert all(code == 0 for code in o["exit_codes"].values()), o["exit_codes"]
    assert o["reachability"] == {"p0": "unknown", **{f"p{i}": "public" for i in range(1, o["public"])},
                                 **{h: "private" for h in o["homes"]}}


def test_members_behind_home_routers_own_shards_over_direct_paths(tmp_path):
    # measured once every node's rounds have eight owners (it fails here if that never comes)
    r = nat_bench.run(PUBLIC, ["cone", "cone", "cone"], rounds=6, compute=0.3, model="tiny", workdir=str(tmp_path),
                      node_args=[], owners=PUBLIC + 3)
    print(nat_bench.format_result(r))
    o, everyone = r["behind_nat"], r["all_public"]
    _trained_together(o)
    _trained_together(everyone)
    assert o["nat_pairs"] == {"direct": 3, "relayed": 0, "not connected": 0}
    assert all(o["owns_shards"].values()) and o["owners"] == [8]
    # a public node sends about what a NATed one does, now that both own a shard each
    assert o["public_over_home_sent"] <= 1.5
    assert all(v == {"sent": 0, "received": 0} for v in o["relayed_bytes"].values())


def test_a_member_behind_a_symmetric_nat_trains_without_owning(tmp_path):
    o = nat_bench.run_setting(PUBLIC, ["cone", "cone", "symmetric"], rounds=6, workdir=tmp_path, settle=30.0)
    print(nat_bench.format_result({"behind_nat": o, "all_public": o, "round_time_ratio": 1.0}).split("\nround")[0])
    _trained_together(o)
    # its router gives each connection a new port: no peer behind NAT reaches it directly, so none of them owns
    assert o["owns_shards"] == {**{f"p{i}": True for i in range(PUBLIC)}, "h0": False, "h1": False, "h2": False}
    assert o["owners"] == [PUBLIC]
    assert o["nat_pairs"]["direct"] <= 1
    assert all(o["accounted_sent_per_round"][h] > 0 for h in o["homes"])
