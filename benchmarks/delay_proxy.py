"""A delaying TCP proxy (a delay line: every chunk leaves one latency after it arrived, in order, at full rate) and a
ping-pong client that measures the round trip through it, for emulating WAN latency where the kernel has no netem.

``python -m benchmarks.delay_proxy serve --listen HOST:PORT --to HOST:PORT --delay-ms 50 [--echo HOST:PORT]``
forwards every connection to ``--to`` and delays each direction by the delay; ``--echo`` adds a port that forwards,
through the same delay lines, to an echo server inside the proxy (what ``ping`` measures against). It prints one JSON
line {"event": "ready", ...} once it listens. ``python -m benchmarks.delay_proxy ping HOST:PORT`` prints one JSON
line with the round-trip times of small messages and the throughput of an echoed bulk transfer.

The delay is applied to the application's bytes, not to packets: the TCP connection on the emulated link itself sees
the link's own (sub-millisecond) round trip, so its congestion window opens faster than over a real 100 ms path; what
the delay does model is every request/response and every first byte of a transfer arriving one latency later.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import socket
import statistics
import sys
import time

CHUNK = 64 * 1024
QUEUE_BYTES = 4 * 1024 * 1024
"""Most bytes held in one direction's delay line: it must exceed rate x delay (100 Mbit/s x 50 ms = 625 KB) or the
line itself would cap the throughput; beyond that, reading stops and TCP's flow control pushes back on the sender."""


def _split(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    # Nagle would hold small messages back for an ACK that the delay line itself delays: latency on top of the set one
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def delay_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk released ``delay`` seconds after it was read (EOF too)."""
    line: collections.deque = collections.deque()
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()
    held = 0

    async def take() -> None:
        nonlocal held
        while True:
            data = await reader.read(CHUNK)
            line.append((time.monotonic() + delay, data))
            held += len(data)
            arrived.set()
            if not data:
                return
            if held > QUEUE_BYTES:
                room.clear()
                await room.wait()

    async def give() -> None:
        nonlocal held
        while True:
            while not line:
                arrived.clear()
                await arrived.wait()
            due, data = line.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            held -= len(data)
            if held <= QUEUE_BYTES:
                room.set()

    taker = asyncio.ensure_future(take())
    try:
        await give()
    finally:
        taker.cancel()


async def _splice(a_reader, a_writer, b_reader, b_writer, delay: float) -> None:
    _nodelay(a_writer)
    _nodelay(b_writer)
    try:
        await asyncio.gather(delay_line(a_reader, b_writer, delay), delay_line(b_reader, a_writer, delay))
    except (ConnectionError, OSError):
        pass
    finally:
        for w in (a_writer, b_writer):
            w.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _nodelay(writer)
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listen: str, to: str, delay: float, echo: str = "") -> None:
    target = _split(to)

    def forwarder(dest: tuple[str, int]):
        async def handle(reader, writer):
            try:
                b_reader, b_writer = await asyncio.open_connection(*dest)
            except OSError:
                writer.close()
                return
            await _splice(reader, writer, b_reader, b_writer, delay)
        return handle

    servers = [await asyncio.start_server(forwarder(target), *_split(listen))]
    if echo:
        echo_server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        echo_port = echo_server.sockets[0].getsockname()[1]
        servers += [echo_server, await asyncio.start_server(forwarder(("127.0.0.1", echo_port)), *_split(echo))]
    print(json.dumps({"event": "ready", "listen": listen, "to": to, "echo": echo, "delay_ms": delay * 1000}),
          flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


async def ping(addr: str, count: int = 20, bulk: int = 0) -> dict:
    """Round trips of 64-byte messages, one at a time, and (``bulk`` bytes) the echoed throughput."""
    reader, writer = await asyncio.open_connection(*_split(addr))
    _nodelay(writer)
    rtts = []
    for _ in range(count):
        began = time.monotonic()
        writer.write(b"x" * 64)
        await reader.readexactly(64)
        rtts.append((time.monotonic() - began) * 1000)
    out = {"to": addr, "rtt_ms": [round(r, 2) for r in rtts], "rtt_ms_min": round(min(rtts), 2),
           "rtt_ms_median": round(statistics.median(rtts), 2)}
    if bulk:
        async def send():
            block = b"y" * CHUNK
            for _ in range(0, bulk, CHUNK):
                writer.write(block)
                await writer.drain()
        began = time.monotonic()
        sender = asyncio.ensure_future(send())
        got = 0
        total = -(-bulk // CHUNK) * CHUNK
        while got < total:
            got += len(await reader.read(CHUNK))
        await sender
        out["echo_mbit_s"] = round(total * 8 / (time.monotonic() - began) / 1e6, 2)
    writer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.delay_proxy")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--delay-ms", type=float, required=True)
    s.add_argument("--echo", default="")
    q = sub.add_parser("ping")
    q.add_argument("addr")
    q.add_argument("--count", type=int, default=20)
    q.add_argument("--bulk", type=int, default=0)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        try:
            asyncio.run(serve(a.listen, a.to, a.delay_ms / 1000, a.echo))
        except KeyboardInterrupt:
            pass
        return 0
    print(json.dumps(asyncio.run(ping(a.addr, a.count, a.bulk))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
