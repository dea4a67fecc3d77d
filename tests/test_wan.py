"""A swarm over emulated home links (demo_node/bench/wan_bench.py): nodes in namespaces of their own, tbf up and down,
latency from a delaying proxy; rounds complete, replicas agree, the latency is there, and no link carries more than
its capacity. Needs root (namespaces, tc)."""

from __future__ import annotations

import pytest

from demo_node.bench import netns, wan_bench

pytestmark = [pytest.mark.wan, pytest.mark.skipif(bool(netns.available()), reason=netns.available() or "root")]

LATENCY_MS = 50.0


def _check(o: dict, rounds: int) -> None:
    assert o["rounds"] >= rounds
    assert o["members"] == o["nodes"]
    assert o["digest_rounds_checked"] >= 2 and o["digest_mismatched_rounds"] == []
    # the proxy holds each direction for the latency: a round trip between two hosts is at least twice it
    assert o["rtt_idle"]["rtt_ms_min"] >= 2 * LATENCY_MS
    assert o["rtt_loaded"]["rtt_ms_min"] >= 2 * LATENCY_MS
    # a token bucket cannot pass more than its rate: the busiest node's bytes per round are under rate x round time
    assert 0 < o["up_fraction_max"] < 1 and 0 < o["down_fraction_max"] < 1
    assert set(o["join_seconds"]) == {f"node {i}" for i in range(o["nodes"])}
    assert 0 < o["utilisation"] <= 1.05


def test_two_nodes_over_slow_links_with_latency(tmp_path):
    """The short one (about a minute): two nodes, 50/10 Mbit/s, 50 ms, overlap on."""
    o = wan_bench.run_setting(2, True, down=50, up=10, latency_ms=LATENCY_MS, compute=0.5, rounds=3, model="tiny",
                              workdir=tmp_path)
    _check(o, 3)


def test_four_nodes_with_and_without_overlap(tmp_path, request):
    """The slow one (a few minutes): runs only when selected with `-m wan`, so the default suite stays short."""
    if "wan" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with `pytest -m wan`")
    for overlap in (False, True):
        o = wan_bench.run_setting(4, overlap, down=50, up=10, latency_ms=LATENCY_MS, compute=1.0, rounds=4,
                                  model="tiny", workdir=tmp_path / str(overlap))
        _check(o, 4)
