"""The local gRPC control API (status, checkpoint now, leave) and the standard health service, and the client
that ``demo-node status`` uses."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from demo_node.wire.proto import demo_node_control_pb2 as cpb
from demo_node.wire.proto import demo_node_control_pb2_grpc as cgrpc

if TYPE_CHECKING:
    from demo_node.node.node import Node

SERVICE = "demo_node.v1.Control"
HEALTHY_STATES = ("joining", "training")


class _Control(cgrpc.ControlServicer):
    def __init__(self, node: "Node"):
        self.node = node

    def Status(self, request, context):
        return self.node.status()

    def Checkpoint(self, request, context):
        try:
            path, round = self.node.checkpoint_now(timeout=120)
        except TimeoutError:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no safe point to checkpoint at within 120 s")
        return cpb.CheckpointReply(path=path, round=round)

    def Leave(self, request, context):
        self.node.request_stop()
        return cpb.LeaveReply(state="leaving")


class ControlServer:
    def __init__(self, node: "Node"):
        self.node = node
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="demo-node-control"))
        cgrpc.add_ControlServicer_to_server(_Control(node), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    def start(self, address: str) -> int:
        self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"control API: cannot listen on {address}")
        self.server.start()
        self.set_state("starting")
        return self.port

    def set_state(self, state: str) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if state in HEALTHY_STATES
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set("", status)
        self.health.set(SERVICE, status)

    def stop(self) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace=2).wait(5)


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
