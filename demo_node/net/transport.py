"""Framed messages over libp2p streams (one libp2p protocol per message kind), with byte accounting, caps and
deadlines, and who may talk to this node at all.

A frame is a 4-byte big-endian length and that many bytes; a frame longer than its kind allows is refused from its
length, before its body is read. A kind served with ``reuse`` keeps its streams for the next exchange: the requester
puts a stream whose exchange ended cleanly back in a pool and sends its next request of that kind to that peer on it,
and the serving end answers request after request until the stream idles out. Opening a libp2p stream costs two
protocol negotiations and its open and close frames (about 360 bytes at the wire and a round trip): the round's own
exchange, once per owner per round, rides on one stream per peer pair instead.

Every handler runs under a deadline, and each peer may have only so many streams open to this node at once. With an
allowlist only the listed peers are served; with a swarm key (a pre-shared secret) a peer is served only after it
proved, in a challenge-response on the "auth" protocol, that it holds the key (and this node proves it to the peers
it asks). Every byte written or read is added to :class:`Accounting` under
the peer, the kind and the direction.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections import Counter
from typing import Awaitable, Callable

from hivemind.p2p import PeerID
from hivemind.utils.multiaddr import Multiaddr

from demo_node.limits import AUTH_TIMEOUT, CLIENT_IDLE, CLOSE_WAIT, HANDLER_TIMEOUT, SERVER_IDLE
from demo_node.net.accounting import Accounting
from demo_node.net.host import Host, peer_b58

log = logging.getLogger(__name__)
HEADER = 4
DEFAULT_LIMIT = 1 << 30
MAX_STREAMS_PER_PEER = 16
"""Streams one peer may have open to this node at once; more are reset at once (and counted)."""
IDLE_PER_PEER = 2
"""Idle streams of one kind a requester keeps per peer."""


PROTOCOL_VERSION = 9
"""Part of every stream protocol's name: a node of another version is not served at all, rather than misread (2: the
hostile-peer protocol; 3: shard results name their inputs with bits and one hash; 4: contribute streams are reused
from round to round; 5: verifiers rotate by round, and a verdict can say the owner withheld inputs; 6: no owner
decides a shard alone: verifiers in relay exchange too, verdicts asked of peers, evidence checked before it is
echoed, the books of who may own in state transfers; 7: payload indices may be Elias-Fano coded; 8: a sparse
exchange's cut carries sign values; 9: a member's statements may change whether it can own a shard, and a round whose
members all say they cannot has them own all the same)."""


class FrameTooLarge(ConnectionError):
    pass


class Stream:
    def __init__(self, peer: bytes, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 accounting: Accounting, limit: int = DEFAULT_LIMIT, addr: str = ""):
        self.peer, self.kind, self.limit = peer, kind, limit
        self.addr = addr
        """The other end's address on the connection this stream rides (a /p2p-circuit one when relayed)."""
        self.relayed = "/p2p-circuit" in addr
        self.peer_b58 = peer_b58(peer)
        self._reader, self._writer, self._accounting = reader, writer, accounting
        self.sent = False
        """Whether anything was written (a handler that answered must let its answer arrive before closing)."""
        self.reusable = False
        """The requester may put it back in its transport's pool once an exchange ended cleanly."""
        self._peeked: bytes | None = None
        """A frame header the serving end read while it waited for the next request."""
        self._resend: Callable[[], Awaitable[None]] | None = None
        """On a stream taken from the pool: sends the request again on a new stream, should this one turn out closed
        before any answer came (the other end let it idle out just as this request went)."""

    async def send(self, data: bytes) -> None:
        self.sent = True
        header = len(data).to_bytes(HEADER, "big")
        if len(data) <= 1 << 16:
            # one write: the daemon turns each read into a frame of its own (with its own multiplexing and
            # encryption overhead at the wire), so a header written apart costs a frame
            self._writer.write(header + data)
        else:
            self._writer.write(header)
            view = memoryview(data)
            for offset in range(0, len(view), 1 << 16):
                self._writer.write(view[offset : offset + (1 << 16)])
        await self._writer.drain()
        self._accounting.add(self.peer_b58, self.kind, "sent", HEADER + len(data), self.relayed)

    async def recv(self, limit: int | None = None) -> bytes:
        """One frame; FrameTooLarge (before reading its body) when it is longer than ``limit`` or the kind's cap."""
        limit = self.limit if limit is None else min(limit, self.limit)
        header = await self._header()
        size = int.from_bytes(header, "big")
        if size > limit:
            self._accounting.add(self.peer_b58, self.kind, "received", HEADER, self.relayed)
            self._accounting.refuse("message_too_large")
            raise FrameTooLarge(f"{self.kind} frame of {size} bytes from {self.peer_b58} > {limit}")
        data = await self._reader.readexactly(size)
        self._accounting.add(self.peer_b58, self.kind, "received", HEADER + size, self.relayed)
        return data

    async def _header(self) -> bytes:
        if self._peeked is not None:
            header, self._peeked = self._peeked, None
            return header
        resend, self._resend = self._resend, None
        try:
            return await self._reader.readexactly(HEADER)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if resend is None or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
        await resend()
        return await self._reader.readexactly(HEADER)

    async def wait_request(self, timeout: float) -> bool:
        """At the serving end of a reused stream: wait for the next request's header; False once the requester
        closed the stream or it idled ``timeout`` seconds."""
        self.sent = False  # the last answer was sent long ago, or the requester has read it and closed
        try:
            self._peeked = await asyncio.wait_for(self._reader.readexactly(HEADER), timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            return False
        return True

    def idle(self) -> bool:
        """Whether it can carry another exchange (the other end has not closed it)."""
        return not self._reader.at_eof() and not self._writer.is_closing()

    async def await_peer_close(self, timeout: float) -> None:
        """Wait until the peer closes its end (reading and dropping anything more it sends, within the timeout)."""
        try:
            async with asyncio.timeout(timeout):
                while await self._reader.read(1 << 16):
                    pass
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass

    async def close(self) -> None:
        try:
            self._writer.close()
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


Handler = Callable[[Stream], Awaitable[None]]


class Transport:
    def __init__(self, host: Host, accounting: Accounting, namespace: str = "demo-node",
                 allowlist: set[bytes] | None = None, swarm_key: bytes = b""):
        self.host, self.accounting, self.namespace = host, accounting, namespace
        self.allowlist = allowlist
        """Peers this node talks to (None: anyone)."""
        self.swarm_key = swarm_key
        self._addresses: dict[bytes, list[str]] = {}
        self._active: Counter[bytes] = Counter()
        self._proven: set[bytes] = set()
        """Peers that proved they hold the swarm key."""
        self._proving: dict[bytes, asyncio.Future] = {}
        self._auth_served = False
        self._idle: dict[tuple[bytes, str], list[tuple[float, Stream]]] = {}
        """(peer, kind) -> streams whose exchange ended cleanly, with when, newest last (see ``release``)."""
        self._swept = 0.0
        """When the pool was last swept of streams that idled out."""

    def _protocol(self, kind: str) -> str:
        return f"/{self.namespace}/{kind}/{PROTOCOL_VERSION}"

    def admits(self, peer: bytes) -> str:
        """Why this node will not serve ``peer`` ("" if it will)."""
        if self.allowlist is not None and peer not in self.allowlist:
            return "not_allowed"
        if self.swarm_key and peer not in self._proven:
            return "not_allowed"
        return ""

    async def serve(self, kind: str, handler: Handler, *, limit: int = DEFAULT_LIMIT,
                    timeout: float = HANDLER_TIMEOUT, reuse: bool = False) -> None:
        """Run ``handler`` for every stream a peer opens on ``kind``: frames capped at ``limit`` bytes, the whole
        exchange at ``timeout`` seconds; streams of peers this node does not admit, or beyond a peer's share of
        open streams, are closed at once. With ``reuse``, ``handler`` runs again for every further request on the
        same stream (one exchange at a time) until the requester closes it or it idles SERVER_IDLE seconds."""

        async def on_stream(info, reader, writer) -> None:
            peer = info.peer_id.to_bytes()
            stream = Stream(peer, kind, reader, writer, self.accounting, limit, addr=str(info.addr))
            refusal = self.admits(peer) if kind != "auth" else ""
            if not refusal and self._active[peer] >= MAX_STREAMS_PER_PEER:
                refusal = "busy"
            if refusal:
                self.accounting.refuse(refusal)
                log.debug("%s stream from %s refused: %s", kind, stream.peer_b58, refusal)
                await stream.close()
                return
            self._active[peer] += 1
            try:
                while await self._exchange(kind, handler, stream, timeout) and reuse:
                    if not await stream.wait_request(SERVER_IDLE):
                        break
            finally:
                self._active[peer] -= 1
                if not self._active[peer]:
                    del self._active[peer]
                if stream.sent:
                    await stream.await_peer_close(timeout=CLOSE_WAIT)
                await stream.close()

        assert self.host.p2p is not None
        if self.swarm_key and not self._auth_served:
            self._auth_served = True
            await self.serve("auth", self._on_auth, limit=1 << 10, timeout=AUTH_TIMEOUT)
        await self.host.p2p.add_binary_stream_handler(self._protocol(kind), on_stream)

    async def _exchange(self, kind: str, handler: Handler, stream: Stream, timeout: float) -> bool:
        """One request and its answers; whether the stream is fit for another."""
        try:
            await asyncio.wait_for(handler(stream), timeout)
            return True
        except asyncio.TimeoutError:
            self.accounting.refuse("timeout")
            log.debug("%s handler for %s ran out of time", kind, stream.peer_b58)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            log.debug("%s stream from %s ended: %r", kind, stream.peer_b58, exc)
        except Exception:
            log.exception("%s handler failed for %s", kind, stream.peer_b58)
        return False

    def remember(self, peer: bytes, maddrs: list[str]) -> None:
        """Addresses to dial a peer that libp2p has not met yet (from its DHT record)."""
        if maddrs:
            self._addresses[peer] = list(maddrs)

    def addresses(self, peer: bytes) -> list[str]:
        """The addresses remembered for ``peer`` (none if its record was never seen)."""
        return list(self._addresses.get(peer, []))

    async def connect(self, peer: bytes, timeout: float) -> None:
        """Dial ``peer`` at its remembered addresses (raises if none answers with its key in time)."""
        addrs = self.addresses(peer)
        if not addrs:
            raise ConnectionError(f"no address known for {peer_b58(peer)}")
        assert self.host.p2p is not None
        await asyncio.wait_for(self.host.p2p._client.connect(PeerID(peer), [Multiaddr(a.split("/p2p/")[0])
                                                                             for a in addrs]), timeout)

    async def open(self, peer: bytes, kind: str) -> Stream:
        p2p = self.host.p2p
        assert p2p is not None
        pid = PeerID(peer)
        try:
            info, reader, writer = await p2p.call_binary_stream_handler(pid, self._protocol(kind))
        except Exception:
            addrs = self._addresses.get(peer)
            if not addrs:
                raise
            # not connected and not found by libp2p's routing: dial the addresses from its DHT record
            await p2p._client.connect(pid, [Multiaddr(a.split("/p2p/")[0]) for a in addrs])
            info, reader, writer = await p2p.call_binary_stream_handler(pid, self._protocol(kind))
        return Stream(peer, kind, reader, writer, self.accounting, addr=str(info.addr))

    async def send_request(self, peer: bytes, kind: str, data: bytes, timeout: float, reuse: bool = False) -> Stream:
        """Open a stream and send one frame on it (proving the swarm key first, if there is one); the caller reads
        the answers and closes the stream. With ``reuse`` (a kind served with reuse), an idle stream to that peer
        is taken from the pool if there is one, and the caller hands the stream to :meth:`release` once it has read
        every answer."""
        if self.allowlist is not None and peer not in self.allowlist:
            raise PermissionError(f"{peer_b58(peer)} is not on the allowlist")
        if self.swarm_key:
            await asyncio.wait_for(self.prove(peer), timeout)
        pooled = self._take_idle(peer, kind) if reuse else None
        if pooled is not None:
            try:
                await asyncio.wait_for(pooled.send(data), timeout)
                pooled._resend = lambda: self._resend(pooled, data, timeout)
                return pooled
            except Exception:
                await pooled.close()
        stream = await asyncio.wait_for(self.open(peer, kind), timeout)
        stream.reusable = reuse
        try:
            await asyncio.wait_for(stream.send(data), timeout)
        except BaseException:
            await stream.close()
            raise
        return stream

    async def _resend(self, stream: Stream, data: bytes, timeout: float) -> None:
        """Move a pooled stream whose other end closed it onto a new stream, and send its request there."""
        await stream.close()
        fresh = await asyncio.wait_for(self.open(stream.peer, stream.kind), timeout)
        stream._reader, stream._writer = fresh._reader, fresh._writer
        stream.addr, stream.relayed = fresh.addr, fresh.relayed
        await asyncio.wait_for(stream.send(data), timeout)

    async def release(self, stream: Stream) -> None:
        """The requester read every answer of the stream's exchange: keep it for the next request of its kind to
        that peer (or close it, when it cannot be reused or enough are kept)."""
        now = asyncio.get_running_loop().time()
        if now - self._swept >= CLIENT_IDLE:
            self._sweep(now)
        idle = self._idle.setdefault((stream.peer, stream.kind), [])
        if not stream.reusable or not stream.idle() or len(idle) >= IDLE_PER_PEER:
            await stream.close()
            return
        stream._resend = None
        idle.append((now, stream))

    def _take_idle(self, peer: bytes, kind: str) -> Stream | None:
        idle = self._idle.get((peer, kind), [])
        now = asyncio.get_running_loop().time()
        while idle:
            since, stream = idle.pop()
            if now - since < CLIENT_IDLE and stream.idle():
                return stream
            stream._writer.close()  # idled out here, or closed by the other end
        return None

    def _sweep(self, now: float) -> None:
        """Close the pooled streams that idled out, of every peer: those of peers that left would stay otherwise."""
        self._swept = now
        for key in list(self._idle):
            kept = []
            for since, stream in self._idle[key]:
                if now - since < CLIENT_IDLE and stream.idle():
                    kept.append((since, stream))
                else:
                    stream._writer.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    async def request(self, peer: bytes, kind: str, data: bytes, timeout: float, limit: int = DEFAULT_LIMIT,
                      reuse: bool = False) -> bytes:
        """Send one frame, wait for one frame back: on a new stream, or with ``reuse`` (a kind served with reuse) on
        an idle one to that peer if there is one, kept for the next request once the answer is in."""
        stream = await self.send_request(peer, kind, data, timeout, reuse=reuse)
        try:
            answer = await asyncio.wait_for(stream.recv(limit), timeout)
        except BaseException:
            await stream.close()
            raise
        await (self.release(stream) if reuse else stream.close())
        return answer

    # -- the swarm key: a challenge-response that proves both ends hold it -------------------------------------------
    def _mac(self, role: bytes, a: bytes, b: bytes, first: bytes, second: bytes) -> bytes:
        return hmac.new(self.swarm_key, role + a + b + first + second, hashlib.sha256).digest()

    async def prove(self, peer: bytes) -> None:
        """Make sure ``peer`` and this node proved to each other that they hold the swarm key (once per peer)."""
        if peer in self._proven:
            return
        if peer not in self._proving:
            self._proving[peer] = asyncio.ensure_future(self._prove(peer))
        try:
            await asyncio.shield(self._proving[peer])
        finally:
            if self._proving.get(peer) is not None and self._proving[peer].done():
                del self._proving[peer]

    async def _prove(self, peer: bytes) -> None:
        me = self.host.peer_id
        stream = await self.open(peer, "auth")
        try:
            a = os.urandom(32)
            await stream.send(a)
            reply = await stream.recv(limit=96)
            b, mac = reply[:32], reply[32:]
            if len(b) != 32 or not hmac.compare_digest(mac, self._mac(b"responder", a, b, peer, me)):
                raise PermissionError(f"{peer_b58(peer)} does not hold the swarm key")
            await stream.send(self._mac(b"requester", a, b, me, peer))
            if await stream.recv(limit=8) != b"ok":
                raise PermissionError(f"{peer_b58(peer)} did not accept this node's proof of the swarm key")
            self._proven.add(peer)
        finally:
            await stream.close()

    async def _on_auth(self, stream: Stream) -> None:
        me = self.host.peer_id
        a = await stream.recv(limit=32)
        if len(a) != 32:
            return
        b = os.urandom(32)
        await stream.send(b + self._mac(b"responder", a, b, me, stream.peer))
        mac = await stream.recv(limit=64)
        if hmac.compare_digest(mac, self._mac(b"requester", a, b, stream.peer, me)):
            self._proven.add(stream.peer)
            await stream.send(b"ok")
        else:
            self.accounting.refuse("not_allowed")
            await stream.send(b"no")
