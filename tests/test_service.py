"""The node as a service: its /metrics scraped by a real Prometheus (config made from deploy/prometheus.yml), the
Grafana dashboard's queries checked against what Prometheus really holds, promtool on the exposition and the
config, and the gRPC control API (status, health, checkpoint now, leave)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from demo_node.node import control
from demo_node.node.states import NodeState
from demo_node.wire.proto import demo_node_control_pb2 as cpb
from tests.swarm_harness import Cluster, NodeProc

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "demo-node.json"
PROM_CONFIG = ROOT / "deploy" / "prometheus.yml"
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                      reason="Debian's prometheus package is not installed (.ci/run installs it)")
pytestmark = pytest.mark.swarm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bdemo_node_[a-z_]+\b", expr))


def prom_query(port: int, query: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def prom_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/label/__name__/values", timeout=10) as r:
        return set(json.load(r)["data"])


def metrics_port(node: NodeProc) -> int:
    return node.of("started")[0]["metrics_port"]


def control_address(node: NodeProc) -> str:
    return f"127.0.0.1:{node.of('started')[0]['control_port']}"


@pytest.fixture
def swarm(tmp_path):
    cluster = Cluster(tmp_path)
    args = ["--metrics", "127.0.0.1:0", "--checkpoint-every", "1000"]
    a = cluster.start("a", args=args).wait_started()
    b = cluster.start("b", a.maddrs, args=args)
    c = cluster.start("c", a.maddrs, args=args)
    for n in (a, b, c):
        n.wait(lambda n=n: any(e["members"] == 3 for e in n.rounds()), 180, "3 members")
    yield cluster, [a, b, c]
    cluster.close()


def test_dashboard_and_provisioning_files_are_consistent():
    dash = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("throughput", "loss", "round time", "participants", "bytes by protocol kind", "per node",
                  "compression", "rejected"):
        assert topic in titles, topic
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"] and all(metric_names(t["expr"]) for t in panel["targets"])
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/demo-node.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


@needs_prometheus
def test_prometheus_config_is_valid():
    subprocess.run(["promtool", "check", "config", str(PROM_CONFIG)], check=True, capture_output=True)


@needs_prometheus
def test_real_prometheus_scrapes_every_dashboard_metric(swarm, tmp_path):
    cluster, nodes = swarm
    for n in nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(n)}/metrics", timeout=10) as r:
            exposition = r.read()
        lint = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint
    # the user-facing config, with the compose service discovery replaced by this swarm's addresses
    config = yaml.safe_load(PROM_CONFIG.read_text())
    job = config["scrape_configs"][0]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port(n)}" for n in nodes]}]
    config["global"]["scrape_interval"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(tmp_path / "prometheus.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        wanted = set().union(*(metric_names(q) for q in dashboard_queries()))
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                up = prom_query(port, "up")
                names = prom_names(port)
            except OSError:
                continue
            if len([r for r in up if r["value"][1] == "1"]) == 3 and wanted <= names:
                break
        else:
            raise AssertionError(f"Prometheus lacks {sorted(wanted - names)}:\n{(tmp_path / 'prometheus.log').read_text()[-2000:]}")
        time.sleep(3)  # a few scrapes, so rate() over the dashboard's windows has points
        for query in dashboard_queries():
            assert prom_query(port, query), f"no data for dashboard query {query}"
        assert float(prom_query(port, "max(demo_node_round_participants)")[0]["value"][1]) == 3
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def test_control_api_status_health_checkpoint_leave(swarm):
    cluster, (a, b, c) = swarm
    address = control_address(b)
    st = control.status(address)
    assert st.run_id == b.of("started")[0]["run_id"] and st.peer_id == b.peer
    assert NodeState(st.state) is NodeState.TRAINING and st.members == 3 and st.round >= 1 and st.bytes_sent > 0
    assert len(st.digest) == 32  # SHA-256 (128 bits), hex
    # b joined a, which dialled it back on 127.0.0.1: public, an owner, connected directly to a and c
    assert (st.reachability, st.owns_shards, st.relayed_connections) == ("public", True, 0)
    assert st.direct_connections >= 1 and st.relayed_bytes_sent == 0
    assert control.healthy(address)
    reply = control.checkpoint(address)
    assert reply.path and Path(reply.path).exists()
    assert NodeState(control.leave(address).state) is NodeState.LEAVING
    assert b.proc.wait(timeout=120) == 0
    assert b.of("left")
    assert not control.healthy(address, timeout=2)  # gone
    # the CLI speaks the same API
    out = subprocess.run(["demo-node", "status", "--control", control_address(a), "--json"], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["peer_id"] == a.peer
    assert subprocess.run(["demo-node", "status", "--control", control_address(a), "--health"]).returncode == 0


def _server(reply: cpb.StatusReply) -> control.ControlServer:
    return control.ControlServer(control.Controls(lambda: reply, lambda timeout: ("", 0), lambda: None))


def test_two_nodes_never_share_a_control_port_and_status_finds_each_by_peer_or_folder(tmp_path, monkeypatch):
    """gRPC would let a second server bind the same port (SO_REUSEPORT) and share its calls at random: a taken
    address is refused by name, the default gives way to a free port, and `demo-node status` finds a node by the end
    of its peer id or by its folder (the registry of running nodes), or asks which when several run."""
    from demo_node.cli import main
    from demo_node.node import registry

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("DEMO_NODE_CONTROL", raising=False)
    first = _server(cpb.StatusReply(peer_id="12D3KooWfirst", round=3))
    port = first.start("127.0.0.1:0")
    second = _server(cpb.StatusReply(peer_id="12D3KooWsecond", round=5))
    with pytest.raises(control.ControlTaken, match=f"127.0.0.1:{port} is in use"):
        second.start(f"127.0.0.1:{port}")
    blocker = None
    if not control._taken(control.DEFAULT_ADDRESS):  # hold the default address, as a first node would
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 7070))
        blocker.listen()
    try:
        assert second.start(control.DEFAULT_ADDRESS) != 7070 and second.address != control.DEFAULT_ADDRESS
    finally:
        if blocker is not None:
            blocker.close()
    try:
        for server, peer, folder in ((first, "12D3KooWfirst", tmp_path / "a"), (second, "12D3KooWsecond",
                                                                                  tmp_path / "b")):
            registry.register(registry.NodeEntry(server.address, os.getpid(), peer, "demo-x", [str(folder)]))
        for how, round in ((["--peer", "first"], 3), (["--peer", "12D3KooWs"], 5), (["--dir", str(tmp_path / "b")], 5),
                           (["--dir", str(tmp_path / "a" / "ckpt")], 3)):
            out = subprocess.run([sys.executable, "-m", "demo_node", "status", "--json", *how], capture_output=True,
                                 text=True, env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")})
            assert out.returncode == 0 and json.loads(out.stdout)["round"] == round, (how, out.stderr)
        with pytest.raises(SystemExit, match="2 nodes run here"):
            main(["status"])
        with pytest.raises(SystemExit, match="no node running here matches peer id 'nobody'"):
            main(["status", "--peer", "nobody"])
        # a node whose process is gone is not listed
        registry.register(registry.NodeEntry("127.0.0.1:1", 2 ** 22 + 12345, "12D3KooWgone", "demo-x", []))
        assert {e.peer_id for e in registry.running()} == {"12D3KooWfirst", "12D3KooWsecond"}
    finally:
        first.stop()
        second.stop()
