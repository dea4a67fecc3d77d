"""Prometheus metrics of a node (``demo_node_`` prefix, base units, ``_total`` counters, ``_seconds`` histograms),
served on ``--metrics host:port``. Bytes per peer and message kind are read from the node's own accounting at scrape
time, so they are never counted twice."""

from __future__ import annotations

import time
from collections import Counter as Counter_
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from demo_node.net.accounting import Accounting
from demo_node.swarm.counters import SwarmCounters
from demo_node.wire.errors import REFUSALS

ROUND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


ROUND_KINDS = frozenset({"contribute", "fetch", "verdict", "inputs", "evidence"})
"""The stream kinds of the round exchange itself (the rest: state transfers, greetings, the swarm key's proofs)."""


class _BytesCollector(Collector):
    """Bytes on this node's libp2p streams, from its own accounting at scrape time. No peer label: in an open swarm
    peer ids are unbounded (Prometheus' guidance is against such labels); each node is its own target, so bytes per
    node come from the ``instance`` label, and per peer from ``demo-node status`` and the ``left`` event."""

    def __init__(self, accounting: Accounting):
        self.accounting = accounting

    def collect(self) -> Iterable[Metric]:
        by_kind: dict[tuple[str, str], int] = {}
        for (_, kind, direction), n in self.accounting.snapshot().items():
            by_kind[(kind, direction)] = by_kind.get((kind, direction), 0) + n
        every = CounterMetricFamily("demo_node_bytes", "Bytes written to (sent) and read from (received) peers' "
                                    "libp2p streams, by protocol kind (contribute, fetch, verdict, inputs, evidence, "
                                    "state, hello, auth)", labels=["kind", "direction"])
        payload = CounterMetricFamily("demo_node_payload_bytes", "Bytes of the round exchange (contributions, shard "
                                      "results, verdicts, fetched results and inputs, evidence), by direction; state "
                                      "transfers and greetings are not in it", labels=["direction"])
        exchange = {"sent": 0, "received": 0}
        for (kind, direction), n in sorted(by_kind.items()):
            every.add_metric([kind, direction], n)
            if kind in ROUND_KINDS:
                exchange[direction] += n
        for direction, n in exchange.items():
            payload.add_metric([direction], n)
        yield every
        yield payload
        relayed = CounterMetricFamily("demo_node_relayed_bytes", "Bytes of those that went over a relayed (/p2p-circuit) "
                                      "connection: another peer carried them", labels=["direction"])
        for direction, n in self.accounting.relayed().items():
            relayed.add_metric([direction], n)
        yield relayed


class _NetworkCollector(Collector):
    """Whether peers can dial this node, and how it is connected to its peers (direct or through a relay), read at
    scrape time."""

    def __init__(self, network: Callable[[], dict]):
        self.network = network

    def collect(self) -> Iterable[Metric]:
        net = self.network()
        reach = GaugeMetricFamily("demo_node_reachability", "1 for how this node's peers can reach it: public (they "
                                  "dialled it back), private (they could not: it owns no shard), unknown",
                                  labels=["state"])
        for state in ("public", "private", "unknown"):
            reach.add_metric([state], float(net.get("reachability") == state))
        paths = GaugeMetricFamily("demo_node_connections", "Peers this node is connected to, by path (direct, or "
                                  "relayed through another peer)", labels=["path"])
        counts = Counter_(net.get("paths", {}).values())
        for path in ("direct", "relayed"):
            paths.add_metric([path], counts.get(path, 0))
        owns = GaugeMetricFamily("demo_node_owns_shards", "1 while this node offers to own shards (a private node does "
                                 "once every member reaches it directly)")
        owns.add_metric([], float(bool(net.get("owns_shards"))))
        yield reach
        yield paths
        yield owns


class _CountersCollector(Collector):
    """Refused payloads and late contributions, read from the round protocol's counters at scrape time."""

    def __init__(self, counters: SwarmCounters, accounting: Accounting, own_late: Callable[[], int],
                 dht_rejected: Callable[[], dict[str, int]]):
        self.counters, self.accounting, self.own_late, self.dht_rejected = counters, accounting, own_late, dht_rejected

    def collect(self) -> Iterable[Metric]:
        late = CounterMetricFamily("demo_node_late_contributions", "Contributions left out of a round for arriving "
                                   "after its close (own: this node's; peers: arrivals at this node's shards)",
                                   labels=["whose"])
        late.add_metric(["own"], self.own_late())
        late.add_metric(["peers"], self.counters.late_arrivals())
        yield late
        refused = CounterMetricFamily("demo_node_payloads_rejected", "Payloads and requests refused or dropped, by "
                                      "reason", labels=["reason"])
        counts = all_refusals(self.counters, self.accounting)
        # every reason exists from the start (at 0), so dashboards and rate() see it before the first refusal
        for reason in sorted(set(REFUSALS) | set(counts)):
            refused.add_metric([reason], counts.get(reason, 0))
        yield refused
        dht = CounterMetricFamily("demo_node_dht_records_rejected", "DHT records of this project dropped by the record "
                                  "validator, by reason (unsigned, bad_signature, schema, run_hash, ...)",
                                  labels=["reason"])
        rejected = self.dht_rejected()
        for why in sorted(set(rejected) | {"bad_signature", "schema", "run_hash"}):
            dht.add_metric([why], rejected.get(why, 0))
        yield dht


def all_refusals(counters: SwarmCounters, accounting: Accounting) -> dict[str, int]:
    """Refusals by reason: the round protocol's, and the transport's (streams refused before any handler saw them:
    busy, message_too_large, timeout, not_allowed)."""
    counts = counters.refusals()
    for reason, n in accounting.refusals().items():
        counts[reason] = counts.get(reason, 0) + n
    return counts


class NodeMetrics:
    def __init__(self, accounting: Accounting, counters: SwarmCounters, own_late: Callable[[], int],
                 checkpoint_time: Callable[[], float], dht_rejected: Callable[[], dict[str, int]] = dict,
                 network: Callable[[], dict] = dict):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.rounds = Counter("demo_node_rounds_completed", "Rounds this node applied", registry=r)
        self.round_duration = Histogram("demo_node_round_duration_seconds", "From a round's opening to its outcome "
                                        "on this node", buckets=ROUND_BUCKETS, registry=r)
        self.compute = Histogram("demo_node_compute_seconds", "Local forward/backward time per round",
                                 buckets=ROUND_BUCKETS, registry=r)
        self.tokens = Counter("demo_node_tokens", "Tokens this node trained on", registry=r)
        self.samples = Counter("demo_node_samples", "Sequences this node trained on", registry=r)
        self.tokens_per_second = Gauge("demo_node_tokens_per_second", "Tokens per second over the last round",
                                       registry=r)
        self.loss = Gauge("demo_node_loss", "Mean training loss of this node's last round", registry=r)
        self.held_out_loss = Gauge("demo_node_held_out_loss", "Loss on the held-out text at the last evaluation",
                                   registry=r)
        self.round = Gauge("demo_node_round", "The next round this node applies", registry=r)
        self.peers_known = Gauge("demo_node_peers_known", "Peers of this run announced in the DHT", registry=r)
        self.participants = Gauge("demo_node_round_participants", "Members of the last round", registry=r)
        self.contributors = Gauge("demo_node_round_contributors", "Contributions included in the last round",
                                  registry=r)
        self.skipped = Counter("demo_node_skipped_shards", "Shards whose update was not applied: no peer had the "
                               "result, or every node skips it (its owner withheld an input or left out most "
                               "contributions that were on time)", registry=r)
        self.shard_checks = Counter("demo_node_shard_checks", "Shard results by how they were checked before they were "
                                    "applied (verified, unverified: the verifier was silent, unaudited: not "
                                    "drawn for an audit, corrected: the owner lied, recomputed, unverifiable, "
                                    "withheld: the owner withheld inputs; not applied)",
                                    ["check"], registry=r)
        for check in ("verified", "unverified", "unaudited", "corrected", "recomputed", "unverifiable", "withheld"):
            self.shard_checks.labels(check)
        self.accused = Gauge("demo_node_peers_accused", "Peers this node caught signing claims that contradict signed "
                             "inputs", registry=r)
        self.demoted = Gauge("demo_node_peers_demoted", "Peers that own no shard for the rest of the run (accused "
                             "with evidence by most members, or caught withholding or leaving out contributions in "
                             "rounds in a row)", registry=r)
        self.benched = Gauge("demo_node_peers_benched", "Peers that own no shard for a while (their shard's result "
                             "reached nobody in rounds in a row)", registry=r)
        self.compression = Gauge("demo_node_compression_ratio", "Dense fp32 gradient bytes per byte of this node's "
                                 "full payload", registry=r)
        self.state_syncs = Counter("demo_node_state_syncs", "Parameter downloads (joins and resyncs)", registry=r)
        self.digest_mismatches = Counter("demo_node_digest_mismatches", "Rounds after which this node's parameters "
                                         "differed from the majority's", registry=r)
        self.checkpoints = Counter("demo_node_checkpoints", "Checkpoints written", registry=r)
        self.checkpoint_age = Gauge("demo_node_checkpoint_age_seconds", "Seconds since the last checkpoint (or since "
                                    "the start, before the first one)", registry=r)
        self.checkpoint_age.set_function(lambda: time.time() - checkpoint_time())
        self.info = Info("demo_node_build", "Version, run, peer and device of this node", registry=r)
        r.register(_BytesCollector(accounting))
        r.register(_NetworkCollector(network))
        r.register(_CountersCollector(counters, accounting, own_late, dht_rejected))
        self.checkpoint_failures = Counter("demo_node_checkpoint_failures", "Checkpoints that could not be written (disk "
                                           "full, folder not writable); training goes on", registry=r)
        self._server = None

    def serve(self, address: str) -> int:
        """Serve /metrics on host:port (port 0: any free one); returns the port."""
        host, _, port = address.rpartition(":")
        server, _ = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        self._server = server
        return server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
