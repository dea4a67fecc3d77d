"""The dial-back probe (net/reachability.py): its messages refuse anything malformed, a prober dials back only the
address the request came from and checks that libp2p answers there, and a node believes the majority of the probers
that answered. Real hosts with real p2pd on 127.0.0.1; a home router's NAT is tested in tests/test_nat.py."""

from __future__ import annotations

import asyncio
import socket

import pytest

from demo_node.net.accounting import Accounting
from demo_node.net.config import NetworkConfig
from demo_node.net.host import Host
from demo_node.net.reachability import (KIND, MAX_PORTS, PRIVATE, PUBLIC, UNKNOWN, DialBackServer, decode_answer,
                                        decode_request, encode_answer, encode_request, libp2p_listens, listen_ports,
                                        observed_ip, probe)
from demo_node.net.transport import Stream, Transport
from demo_node.node.peer import public_guesses
from demo_node.options import OptionError, build

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def test_requests_name_one_to_four_nonzero_ports():
    assert decode_request(encode_request([1, 65535, 4001])) == [1, 65535, 4001]
    for bad in (b"", b"\x00", b"\x00\x00", b"\x01\x02\x03", encode_request([1, 2, 3, 4]) + b"\x00\x05"):
        with pytest.raises(ValueError):
            decode_request(bad)
    assert len(encode_request(list(range(1, 10)))) == 2 * MAX_PORTS


def test_answers_are_flags_and_an_ip_address():
    assert decode_answer(encode_answer([True, False], "11.77.0.101"), 2) == ([True, False], "11.77.0.101")
    assert decode_answer(encode_answer([False], ""), 1) == ([False], "")
    for bad in (b"", b"\x02", b"\x01not-an-ip", b"\x01" + b"1" * 70, b"\x01\xff\xfe"):
        with pytest.raises(ValueError):
            decode_answer(bad, 1)


def test_the_address_a_request_came_from():
    assert observed_ip("/ip4/11.77.0.101/tcp/4001") == "11.77.0.101"
    assert observed_ip("/ip6/::1/udp/9/quic-v1") == "::1"
    assert observed_ip("/ip4/11.77.0.1/tcp/4001/p2p/12D3KooWA/p2p-circuit") == ""  # relayed: nothing to dial
    assert observed_ip("/dns4/example.org/tcp/1") == "" and observed_ip("") == "" and observed_ip("/ip4/x/tcp/1") == ""


def test_the_ports_a_node_asks_to_be_dialled_at():
    maddrs = ["/ip4/11.77.0.9/tcp/4001", "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA", "/ip4/1.2.3.4/udp/9/quic-v1",
              "/ip4/11.77.0.1/tcp/5/p2p/12D3KooWA/p2p-circuit", "/ip4/10.0.0.2/tcp/4002"]
    assert listen_ports(maddrs) == [4001, 4002]
    assert listen_ports([f"/ip4/1.2.3.4/tcp/{p}" for p in range(100, 110)]) == [100, 101, 102, 103]
    # odd addresses of one's own config are skipped, not a crash
    assert listen_ports(["/ip4/1.2.3.4/tcp/", "/dns4/tcp/tcp/5", "/ip4/1.2.3.4/tcp/70000", "/ip4/1.2.3.4/tcp/x"]) == []


def test_a_private_node_guesses_its_public_address_with_its_own_ports():
    mine = ["/ip4/192.168.1.2/tcp/4001/p2p/12D3KooWA", "/ip4/192.168.1.2/udp/4002/quic-v1/p2p/12D3KooWA",
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA"]
    assert public_guesses(mine, ["11.77.0.101", "::1", "127.0.0.1", "192.168.9.9"]) == ["/ip4/11.77.0.101/tcp/4001/p2p/12D3KooWA",
                                                            "/ip4/11.77.0.101/udp/4002/quic-v1/p2p/12D3KooWA"]
    assert public_guesses(mine, []) == []


def test_a_bad_reachability_setting_names_itself():
    with pytest.raises(OptionError, match="reachability"):
        build(NetworkConfig, {"reachability": "sometimes"})


@pytest.fixture(scope="module")
def hosts():
    """Three hosts that answer probes, one that asks, one that lies about every port and one that answers
    garbage."""
    made = [Host(NetworkConfig(listen=LOOPBACK)).start()]
    made += [Host(NetworkConfig(peers=made[0].maddrs, listen=LOOPBACK)).start() for _ in range(5)]
    transports = [Transport(h, Accounting()) for h in made]
    for h, t in zip(made[:4], transports[:4]):
        h.call(DialBackServer(t).start(), timeout=30)

    async def liar(stream: Stream) -> None:
        ports = decode_request(await stream.recv())
        await stream.send(encode_answer([True] * len(ports), "127.0.0.1"))

    async def garbage(stream: Stream) -> None:
        await stream.recv()
        await stream.send(b"\x07\x07garbage")

    made[4].call(transports[4].serve(KIND, liar), timeout=30)
    made[5].call(transports[5].serve(KIND, garbage), timeout=30)
    yield made, transports
    for h in reversed(made):
        h.shutdown()


def _port(host: Host) -> int:
    return listen_ports(host.maddrs)[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_libp2p_listener_answers_the_check_and_nothing_else_does(hosts):
    made, _ = hosts

    async def other_server() -> bool:
        async def reply(reader, writer):
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(reply, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await libp2p_listens("127.0.0.1", port)
        finally:
            server.close()

    loop = made[3]
    assert loop.call(libp2p_listens("127.0.0.1", _port(made[0])), timeout=30)
    assert not loop.call(libp2p_listens("127.0.0.1", _closed_port(), timeout=1), timeout=30)
    assert not loop.call(other_server(), timeout=30)


def test_peers_dial_a_reachable_node_back_and_not_an_unreachable_port(hosts):
    made, transports = hosts
    asker, probers = made[3], [h.peer_id for h in made[:3]]
    found = asker.call(probe(transports[3], probers, [_port(asker)], timeout=20), timeout=60)
    assert (found.state, found.observed) == (PUBLIC, ["127.0.0.1"]) and found.how.startswith("3 of 3")
    found = asker.call(probe(transports[3], probers, [_closed_port()], timeout=20), timeout=60)
    assert found.state == PRIVATE and found.how.startswith("0 of 3")
    assert asker.call(probe(transports[3], probers, [], timeout=20), timeout=60).state == PRIVATE
    # several ports are dialled at once: two closed ones beside the open one cost no more than one
    found = asker.call(probe(transports[3], probers, [_closed_port(), _port(asker), _closed_port()], timeout=20),
                       timeout=60)
    assert found.state == PUBLIC


def test_the_majority_of_answering_probers_decides_and_garbage_is_no_answer(hosts):
    made, transports = hosts
    asker, honest, liar, garbage = made[3], made[0].peer_id, made[4].peer_id, made[5].peer_id
    closed = _closed_port()
    # one liar against one honest prober: a tie is not a majority for "reachable"
    found = asker.call(probe(transports[3], [honest, liar], [closed], timeout=20), timeout=60)
    assert found.state == PRIVATE and found.how.startswith("1 of 2")
    # a prober that answers garbage counts as no answer at all
    found = asker.call(probe(transports[3], [honest, garbage], [closed], timeout=20), timeout=60)
    assert found.state == PRIVATE and found.how.startswith("0 of 1")
    # nobody answered: private (direct connections may still make it an owner); nobody to ask: unknown
    found = asker.call(probe(transports[3], [garbage], [closed], timeout=20), timeout=60)
    assert found.state == PRIVATE and found.how.startswith("none of 1")
    assert asker.call(probe(transports[3], [], [closed], timeout=20), timeout=60).state == UNKNOWN


def test_a_malformed_request_is_refused_and_counted(hosts):
    made, transports = hosts

    async def ask() -> bytes:
        return await transports[3].request(made[0].peer_id, KIND, b"\x00\x00", timeout=10)

    with pytest.raises(Exception):
        made[3].call(ask(), timeout=30)
    assert transports[0].accounting.refusals().get("malformed", 0) >= 1
