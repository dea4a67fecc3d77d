"""Streams reused from exchange to exchange (the round's contribute kind): real hosts with real p2pd on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from demo_node.net import transport as transport_module
from demo_node.net.accounting import Accounting
from demo_node.net.config import NetworkConfig
from demo_node.net.host import Host
from demo_node.net.transport import Stream, Transport

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@pytest.fixture(scope="module")
def pair():
    a = Host(NetworkConfig(listen=LOOPBACK)).start()
    b = Host(NetworkConfig(peers=a.maddrs, listen=LOOPBACK)).start()
    ta, tb = Transport(a, Accounting()), Transport(b, Accounting())
    seen: list[int] = []
    alive: list[Stream] = []  # a closed stream kept referenced, so no later stream can take its id()

    async def echo(stream: Stream) -> None:
        alive.append(stream)
        seen.append(id(stream))
        data = await stream.recv()
        await stream.send(b"re:" + data)

    a.call(ta.serve("echo", echo, limit=1 << 10, reuse=True), timeout=30)
    a.call(ta.serve("once", echo, limit=1 << 10), timeout=30)
    yield a, b, tb, seen
    b.shutdown()
    a.shutdown()


def _exchange(b: Host, tb: Transport, peer: bytes, kind: str, data: bytes, reuse: bool = True) -> bytes:
    async def go() -> bytes:
        stream = await tb.send_request(peer, kind, data, timeout=20, reuse=reuse)
        reply = await stream.recv()
        await (tb.release(stream) if reuse else stream.close())
        return reply

    return b.call(go(), timeout=60)


def test_requests_of_a_reused_kind_share_one_stream(pair):
    a, b, tb, seen = pair
    seen.clear()
    replies = [_exchange(b, tb, a.peer_id, "echo", f"m{i}".encode()) for i in range(5)]
    assert replies == [f"re:m{i}".encode() for i in range(5)]
    assert len(set(seen)) == 1, "every exchange should have come on the first stream"
    seen.clear()
    for i in range(3):
        _exchange(b, tb, a.peer_id, "once", b"x", reuse=False)
    assert len(set(seen)) == 3, "a kind served without reuse gets a stream per request"


def test_a_stream_the_server_let_idle_out_is_replaced(pair, monkeypatch):
    a, b, tb, seen = pair
    monkeypatch.setattr(transport_module, "SERVER_IDLE", 0.3)
    _exchange(b, tb, a.peer_id, "echo", b"first")  # the server's loop now idles out after 0.3 s
    _exchange(b, tb, a.peer_id, "echo", b"second")
    seen.clear()
    b.call(asyncio.sleep(1.5), timeout=10)
    # the pooled stream is closed at the other end: the request goes on a new stream, seen or not as closed here
    monkeypatch.setattr(Stream, "idle", lambda self: True)  # as if the close had not reached this end yet
    assert _exchange(b, tb, a.peer_id, "echo", b"third") == b"re:third"
    assert _exchange(b, tb, a.peer_id, "echo", b"fourth") == b"re:fourth"
    assert len(seen) == 2 and len(set(seen)) == 1, "the replacement stream should carry both requests"


def test_an_unread_answer_never_reaches_the_next_exchange(pair):
    a, b, tb, seen = pair

    async def abandon() -> None:
        stream = await tb.send_request(a.peer_id, "echo", b"unread", timeout=20, reuse=True)
        await stream.close()  # the caller gave up without reading: such a stream is never pooled

    b.call(abandon(), timeout=30)
    assert _exchange(b, tb, a.peer_id, "echo", b"next") == b"re:next"


def test_idled_out_streams_leave_the_pool(pair, monkeypatch):
    a, b, tb, seen = pair
    stale = b.call(tb.send_request(a.peer_id, "echo", b"one", timeout=20, reuse=True), timeout=30)
    b.call(stale.recv(), timeout=30)
    tb._idle[(b"a-peer-that-left", "echo")] = [(0.0, stale)]  # pooled long ago, and its peer never asked again
    monkeypatch.setattr(tb, "_swept", 0.0)  # a sweep is due
    _exchange(b, tb, a.peer_id, "echo", b"two")  # its release sweeps the whole pool
    assert (b"a-peer-that-left", "echo") not in tb._idle
    assert tb._idle.get((a.peer_id, "echo")), "the stream just released is kept"
