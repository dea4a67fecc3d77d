"""An emulated internet with home routers: public hosts on a bridged "internet", and home hosts each behind a router
of its own that masquerades them and drops what nobody inside asked for, as a home NAT does.

Needs root, iproute2 and iptables. Everything lives in network namespaces made here: the internet's bridge in one,
every host and router in its own, so nothing touches the machine's interfaces and the internet's addresses (public
looking, as libp2p ignores documentation and private ranges when it looks for a public address) never leave them.

Routers come in three kinds:

- ``cone``: MASQUERADE keeps a home host's source port where it can and inbound packets pass only on a connection the
  host opened (conntrack), the rest is dropped silently: the common home router. Hole punching can work through it.
- ``symmetric``: MASQUERADE with random ports for every connection (``--random-fully``), so the port a peer observes
  is not the one the next peer would have to use: no hole punching, only relays.
- ``reject``: like ``cone``, but unsolicited TCP is answered with a reset, which defeats TCP hole punching (QUIC's
  UDP packets are dropped silently and can still get through).
"""

from __future__ import annotations

import os
import shutil

from benchmarks.netns import delete_namespaces, link_counters, sh

KINDS = ("cone", "symmetric", "reject")


def available() -> str:
    """Why the emulated NAT cannot be made here ("" when it can)."""
    if os.geteuid() != 0:
        return "network namespaces and NAT need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"the emulated NAT needs {tool}"
    return ""


class NatNet:
    """Public hosts p0..p{n-1} at 11.77.0.(i+1); home host h<j> at 192.168.(j+1).2 behind router r<j>, whose public
    side is 11.77.0.(101+j). ``prefix(name)`` runs a process on a host, ``ip(name)`` is its own address."""

    def __init__(self, public: int, homes: list[str]):
        bad = [k for k in homes if k not in KINDS]
        if bad:
            raise ValueError(f"router kinds {bad}: one of {', '.join(KINDS)}")
        self.tag = f"nn{os.getpid() % 10000}"
        self.bridge_ns = f"{self.tag}br"
        self.spaces: list[str] = []
        self.ips: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        try:
            self._add(self.bridge_ns)
            self._in(self.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
            self._in(self.bridge_ns, "ip", "link", "set", "br0", "up")
            for i in range(public):
                self._on_internet(f"p{i}", f"11.77.0.{i + 1}")
            for j, kind in enumerate(homes):
                self._home(j, kind)
        except BaseException:
            self.close()
            raise

    # -- building ---------------------------------------------------------------------------------------------------
    def _add(self, ns: str) -> None:
        sh("ip", "netns", "add", ns)
        self.spaces.append(ns)
        self._in(ns, "ip", "link", "set", "lo", "up")

    @staticmethod
    def _in(ns: str, *args: str) -> None:
        sh("ip", "netns", "exec", ns, *args)

    def _on_internet(self, name: str, ip: str) -> None:
        """A namespace for ``name`` with interface "wan" on the internet's bridge at ``ip``."""
        ns = self.ns(name)
        self._add(ns)
        port = f"v{name}"
        self._in(self.bridge_ns, "ip", "link", "add", port, "type", "veth", "peer", "name", "wan")
        self._in(self.bridge_ns, "ip", "link", "set", "wan", "netns", ns)
        self._in(self.bridge_ns, "ip", "link", "set", port, "master", "br0", "up")
        self._in(ns, "ip", "addr", "add", f"{ip}/24", "dev", "wan")
        self._in(ns, "ip", "link", "set", "wan", "up")
        self.ips[name] = ip

    def _home(self, j: int, kind: str) -> None:
        router, host = f"r{j}", f"h{j}"
        self._on_internet(router, f"11.77.0.{101 + j}")
        rns, hns = self.ns(router), self.ns(host)
        self._add(hns)
        self._in(rns, "ip", "link", "add", "lan", "type", "veth", "peer", "name", "eth0")
        self._in(rns, "ip", "link", "set", "eth0", "netns", hns)
        self._in(rns, "ip", "addr", "add", f"192.168.{j + 1}.1/24", "dev", "lan")
        self._in(rns, "ip", "link", "set", "lan", "up")
        self._in(hns, "ip", "addr", "add", f"192.168.{j + 1}.2/24", "dev", "eth0")
        self._in(hns, "ip", "link", "set", "eth0", "up")
        self._in(hns, "ip", "route", "add", "default", "via", f"192.168.{j + 1}.1")
        self._in(rns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        masquerade = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
        self._in(rns, *masquerade, *(["--random-fully"] if kind == "symmetric" else []))
        for chain in ("FORWARD", "INPUT"):
            self._in(rns, "iptables", "-A", chain, "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                     "-j", "ACCEPT")
            if kind == "reject":
                self._in(rns, "iptables", "-A", chain, "-i", "wan", "-p", "tcp", "-j", "REJECT", "--reject-with",
                         "tcp-reset")
            self._in(rns, "iptables", "-A", chain, "-i", "wan", "-j", "DROP")
        self.ips[host] = f"192.168.{j + 1}.2"
        self.kinds[host] = kind

    # -- using --------------------------------------------------------------------------------------------------
    def ns(self, name: str) -> str:
        return f"{self.tag}{name}"

    def prefix(self, name: str) -> list[str]:
        """The command prefix that runs a process on host ``name`` (p<i> or h<j>)."""
        return ["ip", "netns", "exec", self.ns(name)]

    def ip(self, name: str) -> str:
        return self.ips[name]

    def public_ip(self, name: str) -> str:
        """The address the internet sees ``name`` at (its router's, for a home host)."""
        return self.ips[f"r{name[1:]}"] if name.startswith("h") else self.ips[name]

    def listen(self, name: str) -> str:
        return f"/ip4/{self.ip(name)}/tcp/0"

    def link_bytes(self, name: str) -> dict[str, int]:
        """Bytes ``name``'s internet side (its router's, for a home host) sent and received so far (see
        :func:`benchmarks.netns.link_counters`)."""
        side = f"r{name[1:]}" if name.startswith("h") else name
        return link_counters(self.ns(side), "wan")

    def close(self) -> None:
        """Kill what still runs in the namespaces (by pid) and delete them."""
        delete_namespaces(list(reversed(self.spaces)))
        self.spaces = []
