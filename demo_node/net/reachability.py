"""Whether peers can dial this node: a dial-back probe its peers answer, and what the node concludes from it.

A node behind a home router sees its own private address and cannot tell by itself whether anyone outside can
connect to it. So it asks a few peers: "dial me back at these ports". A peer answering takes the address it saw the
request come from (the router's public one, for a node behind NAT; a relayed request has none and gets no probe),
opens a fresh TCP connection to it at each port from a new socket, and checks that a libp2p listener answers there
(the multistream-select greeting). A router that only lets in what the home host asked for drops that connection:
the node is private. A public node, or one whose router forwards its port (UPnP or by hand, with ``--announce``),
is reached: it is public. Petals asks its DHT peers the same question; this probe needs no second libp2p daemon.

The answering side is bounded, since the requester may be hostile: it dials only the address the request came from
(never one the request names), at most MAX_PORTS ports at once for DIAL_TIMEOUT seconds in all, one probe at a time
per peer and PROBES_AT_ONCE over all peers (a request beyond them is answered at once with no probe, so a crowd of
requesters cannot make honest ones wait). Answers are hostile too: a prober may lie either way, so the node believes
the majority of the probers that answered, and takes as its public address only one most of them saw. A node that
asked and got no answer at all counts as private (it may still own shards once every member reaches it directly,
see node/direct_paths.py); only a node with nobody to ask (a swarm's first) counts as public. A lie costs little: a
node wrongly taken for public is one whose shards time out and lose their owner, as any dead owner's do; one
wrongly taken for private owns no shard until its direct connections show otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from demo_node.net.transport import Stream, Transport

log = logging.getLogger(__name__)

KIND = "dialback"
MAX_PORTS = 4
DIAL_TIMEOUT = 3.0
"""Seconds a prober waits for the ports to answer, all dialled at once (a dropped SYN is retried by the kernel after
1 s): well within the asker's wait for the answer."""
PROBES_AT_ONCE = 8
"""Probes one node runs at once (each: up to MAX_PORTS connections for DIAL_TIMEOUT seconds). A swarm that starts
all at once asks its first node first: with 2, a third joiner got no answer and took itself for private."""
PROBERS = 3
"""Peers a node asks."""
MULTISTREAM = b"\x13/multistream/1.0.0\n"
"""The first bytes each end of a libp2p connection sends (a length-prefixed protocol id)."""
PUBLIC, PRIVATE, UNKNOWN = "public", "private", "unknown"


@dataclass
class Reachability:
    state: str = UNKNOWN
    """public: peers reached this node at its own ports; private: they could not (it joins as a node that owns no
    shard); unknown: nobody answered (a node alone counts as public)."""
    how: str = ""
    """How it was learned, for logs and ``demo-node status``."""
    observed: list[str] = field(default_factory=list)
    """The addresses the probers saw this node at."""

    @property
    def private(self) -> bool:
        return self.state == PRIVATE


def encode_request(ports: list[int]) -> bytes:
    return b"".join(p.to_bytes(2, "big") for p in ports[:MAX_PORTS] if 0 < p < 1 << 16)


def decode_request(data: bytes) -> list[int]:
    """The ports a dial-back request names; ValueError for anything else."""
    if not data or len(data) % 2 or len(data) > 2 * MAX_PORTS:
        raise ValueError(f"a dial-back request of {len(data)} bytes")
    ports = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if 0 in ports:
        raise ValueError("port 0")
    return ports


def encode_answer(reached: list[bool], observed: str) -> bytes:
    return bytes(int(r) for r in reached) + observed.encode()


def decode_answer(data: bytes, asked: int) -> tuple[list[bool], str]:
    """(which of the ``asked`` ports were reached, the address the prober saw); ValueError for anything else."""
    if len(data) < asked or any(b > 1 for b in data[:asked]) or len(data) > asked + 64:
        raise ValueError("a malformed dial-back answer")
    observed = data[asked:].decode("ascii")
    if observed:
        ipaddress.ip_address(observed)
    return [bool(b) for b in data[:asked]], observed


def observed_ip(addr: str) -> str:
    """The IP address in a connection's multiaddr (``/ip4/1.2.3.4/tcp/5``); "" for a relayed one or another kind."""
    parts = addr.split("/")
    if "p2p-circuit" in parts or len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return ""
    try:
        return str(ipaddress.ip_address(parts[2]))
    except ValueError:
        return ""


async def libp2p_listens(ip: str, port: int, timeout: float = DIAL_TIMEOUT) -> bool:
    """Whether a fresh TCP connection to ip:port is accepted and answered with libp2p's multistream greeting, all
    within ``timeout`` seconds."""
    writer = None

    async def greeted() -> bool:
        nonlocal writer
        reader, writer = await asyncio.open_connection(ip, port)
        writer.write(MULTISTREAM)
        await writer.drain()
        return await reader.readexactly(len(MULTISTREAM)) == MULTISTREAM

    try:
        return await asyncio.wait_for(greeted(), timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()


class DialBackServer:
    """Answers other peers' dial-back requests (see the module's text for its bounds)."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self._busy: set[bytes] = set()
        """Peers whose probe is under way (at most PROBES_AT_ONCE)."""

    async def start(self) -> None:
        await self.transport.serve(KIND, self._on_request, limit=2 * MAX_PORTS, timeout=4 * MAX_PORTS * DIAL_TIMEOUT)

    async def _on_request(self, stream: Stream) -> None:
        try:
            ports = decode_request(await stream.recv())
        except ValueError:
            self.transport.accounting.refuse("malformed")
            return
        ip = observed_ip(stream.addr)
        if not ip or stream.peer in self._busy or len(self._busy) >= PROBES_AT_ONCE:
            await stream.send(encode_answer([False] * len(ports), ""))  # no observed address: not an answer
            return
        self._busy.add(stream.peer)
        try:
            reached = await asyncio.gather(*(libp2p_listens(ip, port) for port in ports))
        finally:
            self._busy.discard(stream.peer)
        await stream.send(encode_answer(list(reached), ip))


def listen_ports(maddrs: list[str]) -> list[int]:
    """The TCP ports among this node's addresses (announced ones first: a forwarded port is announced)."""
    ports: list[int] = []
    for maddr in maddrs:
        parts = maddr.split("/")
        if "tcp" not in parts or "p2p-circuit" in parts:
            continue
        text = parts[parts.index("tcp") + 1] if parts.index("tcp") + 1 < len(parts) else ""
        port = int(text) if text.isdigit() else 0
        if 0 < port < 1 << 16 and port not in ports:
            ports.append(port)
    return ports[:MAX_PORTS]


async def probe(transport: Transport, probers: list[bytes], ports: list[int], timeout: float) -> Reachability:
    """Ask up to PROBERS of ``probers`` to dial this node back at ``ports``: public when most that answered reached
    at least one port, private when most reached none or nobody answered, unknown with nobody to ask. ``observed``:
    the addresses most of them saw it at."""
    if not probers:
        return Reachability(UNKNOWN, "no peer to ask for a dial-back probe")
    if not ports:
        return Reachability(PRIVATE, "no TCP port to be dialled at")
    chosen = random.sample(probers, min(PROBERS, len(probers)))

    async def ask(peer: bytes) -> tuple[list[bool], str] | None:
        try:
            answer = await transport.request(peer, KIND, encode_request(ports), timeout, limit=MAX_PORTS + 64)
            return decode_answer(answer, len(ports))
        except Exception as exc:  # a prober that is gone, slow, of another version or lying in its format
            log.debug("dial-back probe by %s: %r", peer.hex()[:12], exc)
            return None

    answers = [a for a in await asyncio.gather(*(ask(p) for p in chosen)) if a is not None and a[1]]
    reached = sum(any(r) for r, _ in answers)
    seen = Counter(ip for _, ip in answers)
    observed = sorted(ip for ip, n in seen.items() if 2 * n > len(answers))
    if not answers:
        return Reachability(PRIVATE, f"none of {len(chosen)} peers asked answered a dial-back probe")
    state = PUBLIC if 2 * reached > len(answers) else PRIVATE
    return Reachability(state, f"{reached} of {len(answers)} peers dialled it back at TCP port(s) "
                               f"{', '.join(map(str, ports))}", observed)
