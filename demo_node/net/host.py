"""A libp2p peer and a hivemind DHT node, run by an asyncio (uvloop) event loop on a thread of its own.

The daemon always runs with an identity file that this process holds (``--identity``, or a fresh Ed25519 key in a
private temporary folder removed at shutdown), so the peer id libp2p authenticates is the key this node signs with.

NAT port mapping (UPnP / NAT-PMP discovery on the LAN) stays off unless asked for: hivemind turns it on by default
in ``P2P.create`` and in the throwaway daemon that checks whether a persistent identity is taken, so both are
switched off here (the identity check is skipped; a peer id collision shows up as a connection error instead).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import tempfile
import threading
from typing import Awaitable, TypeVar

import uvloop
from hivemind.dht.node import DHTNode
from hivemind.p2p import P2P, P2PDaemonError, PeerID
from hivemind.utils.multiaddr import Multiaddr

from demo_node.crypto import Identity
from demo_node.errors import DemoNodeError
from demo_node.net.config import NetworkConfig
from demo_node.limits import NETWORK_STOP, P2PD_STARTUP
from demo_node.net.daemon_process import detached_daemon
from demo_node.net.records import RecordValidator

log = logging.getLogger(__name__)
T = TypeVar("T")
EXAMPLE = "/ip4/203.0.113.7/tcp/31337/p2p/12D3KooW..."


class PeerAddressError(DemoNodeError, ValueError):
    """An address given with --peers that is not one, or peers that nobody answers at."""


def check_peer_address(maddr: str) -> None:
    """PeerAddressError, naming ``maddr`` and what is wrong with it, unless it is a multiaddr ending in a peer id."""
    if not maddr.startswith("/"):
        raise PeerAddressError(f"--peers {maddr!r}: not an address (one looks like {EXAMPLE}, as the node printed it)")
    if "/p2p/" not in maddr:
        raise PeerAddressError(f"--peers {maddr!r}: no /p2p/<peer id> at its end (copy the whole address the node "
                               f"printed, like {EXAMPLE})")
    head, _, peer = maddr.rpartition("/p2p/")
    try:
        raw = PeerID.from_base58(peer).to_bytes()
    except Exception:
        raw = b""
    # a multihash: sha2-256 of the key (0x12, 32 bytes) or the key itself (identity, 0x00 and its length)
    if not ((raw[:2] == b"\x12\x20" and len(raw) == 34) or (raw[:1] == b"\x00" and len(raw) == raw[1] + 2 > 2)):
        raise PeerAddressError(f"--peers {maddr!r}: {peer!r} is not a peer id")
    try:
        Multiaddr(head)
    except Exception as exc:
        raise PeerAddressError(f"--peers {maddr!r}: not an address ({exc})") from None


class Host:
    """Start with :meth:`start`; run coroutines on its loop with :meth:`call` / :meth:`submit`."""

    def __init__(self, config: NetworkConfig):
        self.config = config
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="demo-node-net", daemon=True)
        self.p2p: P2P | None = None
        self.dht: DHTNode | None = None
        self._temp_identity_dir = "" if config.identity else tempfile.mkdtemp(prefix="demo-node-identity-")
        self.identity_path = config.identity or os.path.join(self._temp_identity_dir, "identity.key")
        self.identity = Identity.load_or_create(self.identity_path)
        self.records = RecordValidator(self.identity)
        """Checks and signs this project's DHT records (see :mod:`demo_node.net.records`)."""
        self.peer_id: bytes = self.identity.peer_id
        self.peer_id_b58: str = PeerID(self.peer_id).to_base58()
        self.maddrs: list[str] = []

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> "Host":
        for maddr in self.config.peers:
            check_peer_address(maddr)
        self._thread.start()
        try:
            self.call(self._start(), timeout=P2PD_STARTUP + 30)
        except P2PDaemonError as exc:
            self.shutdown()
            if "failed to connect to bootstrap peers" in str(exc):
                raise PeerAddressError(f"none of the peers given with --peers answers: {', '.join(self.config.peers)} "
                                       "(is a node running there, and can this machine reach its port?)") from None
            raise DemoNodeError(f"p2pd did not start: {str(exc).splitlines()[0][:300]}") from None
        except BaseException:
            self.shutdown()
            raise
        return self

    async def _start(self) -> None:
        cfg = self.config
        with detached_daemon():
            self.p2p = await self._create_p2p(cfg)
        self.dht = await DHTNode.create(
            p2p=self.p2p, initial_peers=cfg.peers or None, client_mode=cfg.client_mode, record_validator=self.records
        )
        if self.p2p.peer_id.to_bytes() != self.peer_id:
            raise RuntimeError(f"p2pd runs as {self.p2p.peer_id.to_base58()}, not as this node's key {self.peer_id_b58}")
        self.maddrs = [] if cfg.client_mode else [str(a) for a in await self.p2p.get_visible_maddrs()]

    async def _create_p2p(self, cfg: NetworkConfig) -> P2P:
        return await P2P.create(
            initial_peers=cfg.peers or None,
            host_maddrs=[] if cfg.client_mode else cfg.listen,
            announce_maddrs=cfg.announce or None,
            identity_path=self.identity_path,
            check_if_identity_free=False,
            nat_port_map=cfg.nat_port_map,
            dht_mode="client" if cfg.client_mode else "server",
            no_listen=cfg.client_mode,
            startup_timeout=P2PD_STARTUP,
        )

    @property
    def p2pd_pid(self) -> int | None:
        child = getattr(self.p2p, "_child", None)
        return None if child is None else child.pid

    @property
    def daemon_alive(self) -> bool:
        """Whether p2pd still runs (a supervisor that signals every process of a node at once, as systemd does by
        default, ends it before the node could say it leaves: nothing is asked of it then)."""
        child = getattr(self.p2p, "_child", None)
        return child is not None and child.returncode is None

    def submit(self, coro: Awaitable[T]) -> "concurrent.futures.Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def shutdown(self) -> None:
        """Stop the DHT node and the p2pd daemon, then the loop; safe to call twice."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                self.call(self._stop(), timeout=NETWORK_STOP)
            except Exception as exc:  # the daemon may already be gone
                log.debug("network shutdown: %s", exc)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=NETWORK_STOP - 5)
        if not self._thread.is_alive():
            self.loop.close()
        if self._temp_identity_dir:
            shutil.rmtree(self._temp_identity_dir, ignore_errors=True)

    async def _stop(self) -> None:
        if self.dht is not None and self.daemon_alive:
            await self.dht.shutdown()
        if self.p2p is not None:
            await self.p2p.shutdown()
        # whatever still runs on this loop (handlers, the DHT's refresh tasks) ends here, not as a warning at exit
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


def peer_b58(peer: bytes) -> str:
    return PeerID(peer).to_base58()


def peer_from_b58(text: str) -> bytes:
    return PeerID.from_base58(text).to_bytes()
