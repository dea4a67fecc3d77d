import demo_node_swarm_pb2 as _demo_node_swarm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("run_id", "peer_id", "state", "round", "members", "peers_known", "loss", "held_out_loss", "bytes_sent", "bytes_received", "digest", "maddrs", "uptime_seconds", "device", "version", "reachability", "direct_connections", "relayed_connections", "relayed_bytes_sent", "relayed_bytes_received", "owns_shards")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    PEERS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_LOSS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MADDRS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REACHABILITY_FIELD_NUMBER: _ClassVar[int]
    DIRECT_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    RELAYED_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    RELAYED_BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    RELAYED_BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    OWNS_SHARDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    peer_id: str
    state: _demo_node_swarm_pb2.NodeState
    round: int
    members: int
    peers_known: int
    loss: float
    held_out_loss: float
    bytes_sent: int
    bytes_received: int
    digest: str
    maddrs: _containers.RepeatedScalarFieldContainer[str]
    uptime_seconds: float
    device: str
    version: str
    reachability: str
    direct_connections: int
    relayed_connections: int
    relayed_bytes_sent: int
    relayed_bytes_received: int
    owns_shards: bool
    def __init__(self, run_id: _Optional[str] = ..., peer_id: _Optional[str] = ..., state: _Optional[_Union[_demo_node_swarm_pb2.NodeState, str]] = ..., round: _Optional[int] = ..., members: _Optional[int] = ..., peers_known: _Optional[int] = ..., loss: _Optional[float] = ..., held_out_loss: _Optional[float] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., digest: _Optional[str] = ..., maddrs: _Optional[_Iterable[str]] = ..., uptime_seconds: _Optional[float] = ..., device: _Optional[str] = ..., version: _Optional[str] = ..., reachability: _Optional[str] = ..., direct_connections: _Optional[int] = ..., relayed_connections: _Optional[int] = ..., relayed_bytes_sent: _Optional[int] = ..., relayed_bytes_received: _Optional[int] = ..., owns_shards: _Optional[bool] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckpointReply(_message.Message):
    __slots__ = ("path", "round")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    path: str
    round: int
    def __init__(self, path: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _demo_node_swarm_pb2.NodeState
    def __init__(self, state: _Optional[_Union[_demo_node_swarm_pb2.NodeState, str]] = ...) -> None: ...
