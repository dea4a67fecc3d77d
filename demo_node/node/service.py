"""What an operator reaches a node by: the local control API and health service (gRPC), the Prometheus metrics, and
the node's entry in the registry of the nodes running on this machine (how ``demo-node status`` finds it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from demo_node.node import registry
from demo_node.node.config import ServiceConfig
from demo_node.node.control import Controls, ControlServer
from demo_node.node.states import NodeState
from demo_node.node.stats import NodeStats

log = logging.getLogger(__name__)


class ServiceSurfaces:
    def __init__(self, cfg: ServiceConfig, stats: NodeStats, controls: Controls):
        self.cfg, self.stats, self.controls = cfg, stats, controls
        self.control: ControlServer | None = None
        self.control_port = self.metrics_port = 0
        self._entry: Path | None = None

    @property
    def control_address(self) -> str:
        return self.control.address if self.control is not None else ""

    def start(self, peer_id_b58: str) -> None:
        cfg = self.cfg
        for what, address in (("control API", cfg.control), ("metrics", cfg.metrics)):
            host = address.rpartition(":")[0].strip("[]")
            if address and host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("the %s listens on %s: anyone who can reach that address can use it (%s)", what, address,
                            "status, checkpoint, leave" if what == "control API" else "read this node's figures")
        if cfg.control:
            self.control = ControlServer(self.controls)
            self.control_port = self.control.start(cfg.control)
            if not cfg.control.endswith(":0") and self.control.address != cfg.control:
                log.warning("control API: %s is taken (another node on this machine?): listening on %s instead "
                            "(demo-node status --peer %s finds it)", cfg.control, self.control.address,
                            peer_id_b58[-8:])
        self.metrics_port = self.stats.metrics.serve(cfg.metrics) if cfg.metrics else 0

    def register(self, peer_id_b58: str, run_id: str, identity: str) -> None:
        """Write this node's entry in the registry of running nodes (with a control API only: it is what the entry
        leads to)."""
        if self.control is None:
            return
        folders = [os.path.abspath(f) for f in (self.cfg.checkpoint_dir, os.path.dirname(identity) if identity
                                                else "") if f]
        self._entry = registry.register(registry.NodeEntry(self.control.address, os.getpid(), peer_id_b58, run_id,
                                                           folders))

    def set_state(self, state: NodeState) -> None:
        if self.control is not None:
            self.control.set_state(state)

    def close(self) -> None:
        if self.control is not None:
            self.control.stop()
            self.control = None
        registry.unregister(self._entry)
        self._entry = None
        self.stats.metrics.close()
