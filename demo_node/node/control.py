"""The local gRPC control API (status, checkpoint now, leave) and the standard health service, and the client
that ``demo-node status`` uses."""

from __future__ import annotations

import concurrent.futures
import socket
from dataclasses import dataclass
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from demo_node.errors import DemoNodeError
from demo_node.limits import CHECKPOINT_WAIT, CONTROL_STOP
from demo_node.node.states import SERVING, NodeState
from demo_node.wire.proto import demo_node_control_pb2 as cpb
from demo_node.wire.proto import demo_node_control_pb2_grpc as cgrpc
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

SERVICE = "demo_node.v1.Control"


@dataclass
class Controls:
    """What the control API can do to a node: the whole of that surface."""

    status: Callable[[], cpb.StatusReply]
    checkpoint: Callable[[float], tuple[str, int]]
    """Checkpoint at the next safe point, waiting at most that many seconds; (path, round). TimeoutError if none."""
    leave: Callable[[], None]
    """Leave at the next safe point (returns at once)."""


class _Control(cgrpc.ControlServicer):
    def __init__(self, controls: Controls):
        self.controls = controls

    def Status(self, request, context):
        return self.controls.status()

    def Checkpoint(self, request, context):
        try:
            path, round = self.controls.checkpoint(CHECKPOINT_WAIT)
        except TimeoutError:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no safe point to checkpoint at within {CHECKPOINT_WAIT} s")
        return cpb.CheckpointReply(path=path, round=round)

    def Leave(self, request, context):
        self.controls.leave()
        return cpb.LeaveReply(state=spb.LEAVING)


DEFAULT_ADDRESS = "127.0.0.1:7070"
"""What ``demo-node join`` listens on unless told otherwise; when another node on the machine has it, the node takes
a free port instead and says which (``demo-node status`` finds it by peer id or folder: :mod:`.registry`)."""


class ControlTaken(DemoNodeError, OSError):
    """The control address is in use by another process."""


def _taken(address: str) -> bool:
    """Whether something already listens on ``address`` (host:port)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or int(port) == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return True
    return False


class ControlServer:
    def __init__(self, controls: Controls):
        # gRPC sets SO_REUSEPORT by default: two nodes would both bind one port and share its calls at random
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="demo-node-control"),
                                  options=[("grpc.so_reuseport", 0)])
        cgrpc.add_ControlServicer_to_server(_Control(controls), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0
        self.address = ""
        """host:port it listens on."""

    def start(self, address: str) -> int:
        """Listen on ``address``; the default one, when taken, gives way to a free port (the caller says which)."""
        host = address.rpartition(":")[0]
        if _taken(address):
            if address != DEFAULT_ADDRESS:
                raise ControlTaken(f"control API: {address} is in use by another process (another node?): give "
                                   f"--control another host:port, or {host}:0 for any free one")
            address = f"{host}:0"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise ControlTaken(f"control API: cannot listen on {address}")
        self.address = f"{host}:{self.port}"
        self.server.start()
        self.set_state(NodeState.STARTING)
        return self.port

    def set_state(self, state: NodeState) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if state in SERVING
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set("", status)
        self.health.set(SERVICE, status)

    def stop(self) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace=CONTROL_STOP - 3).wait(CONTROL_STOP)


def status(address: str, timeout: float = 10) -> cpb.StatusReply:
    with grpc.insecure_channel(address) as channel:
        return cgrpc.ControlStub(channel).Status(cpb.StatusRequest(), timeout=timeout)


def healthy(address: str, timeout: float = 10) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def checkpoint(address: str, timeout: float = 150) -> cpb.CheckpointReply:
    with grpc.insecure_channel(address) as channel:
        return cgrpc.ControlStub(channel).Checkpoint(cpb.CheckpointRequest(), timeout=timeout)


def leave(address: str, timeout: float = 10) -> cpb.LeaveReply:
    with grpc.insecure_channel(address) as channel:
        return cgrpc.ControlStub(channel).Leave(cpb.LeaveRequest(), timeout=timeout)
