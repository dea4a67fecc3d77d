"""Framed messages over libp2p streams (one libp2p protocol per message kind), with byte accounting.

A frame is a 4-byte big-endian length and that many bytes. Streams are the fast path of hivemind's daemon (unary
calls are capped at 4 MiB and slower). Every byte written or read is added to :class:`Accounting` under the peer,
the kind and the direction.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from hivemind.p2p import PeerID
from hivemind.utils.multiaddr import Multiaddr

from demo_node.net.accounting import Accounting
from demo_node.net.host import Host, peer_b58

log = logging.getLogger(__name__)
HEADER = 4
DEFAULT_LIMIT = 1 << 30


class FrameTooLarge(ConnectionError):
    pass


class Stream:
    def __init__(self, peer: bytes, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 accounting: Accounting):
        self.peer, self.kind = peer, kind
        self.peer_b58 = peer_b58(peer)
        self._reader, self._writer, self._accounting = reader, writer, accounting

    async def send(self, data: bytes) -> None:
        self._writer.write(len(data).to_bytes(HEADER, "big"))
        view = memoryview(data)
        for offset in range(0, len(view), 1 << 16):
            self._writer.write(view[offset : offset + (1 << 16)])
        await self._writer.drain()
        self._accounting.add(self.peer_b58, self.kind, "sent", HEADER + len(data))

    async def recv(self, limit: int = DEFAULT_LIMIT) -> bytes:
        header = await self._reader.readexactly(HEADER)
        size = int.from_bytes(header, "big")
        if size > limit:
            self._accounting.add(self.peer_b58, self.kind, "received", HEADER)
            raise FrameTooLarge(f"{self.kind} frame of {size} bytes from {self.peer_b58} > {limit}")
        data = await self._reader.readexactly(size)
        self._accounting.add(self.peer_b58, self.kind, "received", HEADER + size)
        return data

    async def await_peer_close(self, timeout: float) -> None:
        """Wait until the peer closes its end: closing first could reset the stream while the last frame is still
        on its way through the daemons, and the peer would never read it."""
        try:
            while await asyncio.wait_for(self._reader.read(1 << 16), timeout):
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
    def __init__(self, host: Host, accounting: Accounting, namespace: str = "demo-node"):
        self.host, self.accounting, self.namespace = host, accounting, namespace
        self._addresses: dict[bytes, list[str]] = {}

    def _protocol(self, kind: str) -> str:
        return f"/{self.namespace}/{kind}/1"

    async def serve(self, kind: str, handler: Handler) -> None:
        async def on_stream(info, reader, writer) -> None:
            stream = Stream(info.peer_id.to_bytes(), kind, reader, writer, self.accounting)
            try:
                await handler(stream)
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                log.debug("%s stream from %s ended: %r", kind, stream.peer_b58, exc)
            except Exception:
                log.exception("%s handler failed for %s", kind, stream.peer_b58)
            finally:
                await stream.await_peer_close(timeout=30)  # the requester closes once it has read the reply
                await stream.close()

        assert self.host.p2p is not None
        await self.host.p2p.add_binary_stream_handler(self._protocol(kind), on_stream)

    def remember(self, peer: bytes, maddrs: list[str]) -> None:
        """Addresses to dial a peer that libp2p has not met yet (from its DHT record)."""
        if maddrs:
            self._addresses[peer] = list(maddrs)

    async def open(self, peer: bytes, kind: str) -> Stream:
        p2p = self.host.p2p
        assert p2p is not None
        pid = PeerID(peer)
        try:
            _, reader, writer = await p2p.call_binary_stream_handler(pid, self._protocol(kind))
        except Exception:
            addrs = self._addresses.get(peer)
            if not addrs:
                raise
            # not connected and not found by libp2p's routing: dial the addresses from its DHT record
            await p2p._client.connect(pid, [Multiaddr(a.split("/p2p/")[0]) for a in addrs])
            _, reader, writer = await p2p.call_binary_stream_handler(pid, self._protocol(kind))
        return Stream(peer, kind, reader, writer, self.accounting)

    async def request(self, peer: bytes, kind: str, data: bytes, timeout: float, limit: int = DEFAULT_LIMIT) -> bytes:
        """Open a stream, send one frame, wait for one frame back."""
        stream = await asyncio.wait_for(self.open(peer, kind), timeout)
        try:
            await asyncio.wait_for(stream.send(data), timeout)
            return await asyncio.wait_for(stream.recv(limit), timeout)
        finally:
            await stream.close()
