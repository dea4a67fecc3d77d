"""An emulated network on one machine: one network namespace per host, each joined to a bridge by a veth pair.

Needs root and iproute2. Nothing touches the machine's own interfaces: the bridge lives in a namespace of its own,
and every veth is made there and has one end moved into its host's namespace. A host's veth counters are what its
processes put on the wire (every protocol, TCP/IP headers included), which is how benchmarks and fault tests measure
bytes; `tc` on a host's veth limits its link.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess


FRAME_HEADERS = 14 + 20 + 32
"""Ethernet, IPv4 and TCP headers (with the timestamp option Linux sends) of one packet on a veth."""


def available() -> str:
    """Why namespaces cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (ip)"
    return ""


def wanted(choice: str) -> bool:
    """Whether a benchmark's ``--netns auto|on|off`` runs its nodes in namespaces (on: or says why it cannot)."""
    why = available()
    if choice == "on" and why:
        raise SystemExit(f"--netns on: {why}")
    return choice == "on" or (choice == "auto" and not why)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Net:
    """Namespaces <tag>n0..n{k-1}, each with one veth (h<i>) into a bridge namespace; host i has 10.77.0.(i+1)/24."""

    def __init__(self, k: int):
        self.tag = f"dn{os.getpid() % 10000}"
        self.bridge_ns = f"{self.tag}br"
        self.hosts: list[str] = []
        try:
            sh("ip", "netns", "add", self.bridge_ns)
            self._in(self.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
            self._in(self.bridge_ns, "ip", "link", "set", "br0", "up")
            self._in(self.bridge_ns, "ip", "link", "set", "lo", "up")
            for i in range(k):
                ns = f"{self.tag}n{i}"
                sh("ip", "netns", "add", ns)
                self.hosts.append(ns)
                self._in(self.bridge_ns, "ip", "link", "add", f"v{i}", "type", "veth", "peer", "name", f"h{i}")
                self._in(self.bridge_ns, "ip", "link", "set", f"h{i}", "netns", ns)
                self._in(self.bridge_ns, "ip", "link", "set", f"v{i}", "master", "br0", "up")
                self._in(ns, "ip", "addr", "add", f"10.77.0.{i + 1}/24", "dev", f"h{i}")
                self._in(ns, "ip", "link", "set", f"h{i}", "up")
                self._in(ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _in(ns: str, *args: str) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args)

    def prefix(self, i: int) -> list[str]:
        """The command prefix that runs a process in host i's namespace."""
        return ["ip", "netns", "exec", self.hosts[i]]

    def address(self, i: int) -> str:
        return f"/ip4/10.77.0.{i + 1}/tcp/0"

    def cut(self, i: int, up: bool = False) -> None:
        """Unplug host i from the bridge (or plug it back)."""
        self._in(self.bridge_ns, "ip", "link", "set", f"v{i}", "up" if up else "down")

    def limit(self, i: int, rate: str, burst: str = "32kbit", latency: str = "400ms") -> None:
        """Limit what host i sends to ``rate`` (a token bucket on its veth, e.g. "2mbit")."""
        self._in(self.hosts[i], "tc", "qdisc", "add", "dev", f"h{i}", "root", "tbf", "rate", rate, "burst", burst,
                 "latency", latency)

    def limit_down(self, i: int, rate: str, burst: str = "32kbit", latency: str = "400ms") -> None:
        """Limit what host i receives to ``rate``: a token bucket on the bridge's end of its veth (v<i>), whose
        egress is the host's download; with ``limit`` on its own end, an asymmetric link as home links are."""
        self._in(self.bridge_ns, "tc", "qdisc", "add", "dev", f"v{i}", "root", "tbf", "rate", rate, "burst", burst,
                 "latency", latency)

    def qdisc(self, i: int) -> str:
        return self._in(self.hosts[i], "tc", "-s", "qdisc", "show", "dev", f"h{i}").stdout

    def link_bytes(self, i: int) -> dict[str, int]:
        """Bytes host i has sent and received on its link so far (see :func:`link_counters`)."""
        return link_counters(self.hosts[i], f"h{i}")

    def close(self) -> None:
        """Kill what still runs in the namespaces (by pid) and delete them."""
        delete_namespaces([*self.hosts, self.bridge_ns])


def link_counters(ns: str, dev: str) -> dict[str, int]:
    """Bytes interface ``dev`` of namespace ``ns`` has sent and received so far: whole frames, and (``*_payload``)
    the TCP payload they carried, taken as the frames less FRAME_HEADERS bytes per packet."""
    out = json.loads(sh("ip", "netns", "exec", ns, "ip", "-s", "-j", "link", "show", dev).stdout)
    tx, rx = out[0]["stats64"]["tx"], out[0]["stats64"]["rx"]
    return {"sent": tx["bytes"], "received": rx["bytes"],
            "sent_payload": tx["bytes"] - FRAME_HEADERS * tx["packets"],
            "received_payload": rx["bytes"] - FRAME_HEADERS * rx["packets"]}


def delete_namespaces(spaces: list[str]) -> None:
    """Kill what still runs in each namespace (by pid), then delete it."""
    for ns in spaces:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "delete", ns, check=False)
