from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExchangeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCHANGE_MODE_UNSPECIFIED: _ClassVar[ExchangeMode]
    EXCHANGE_RELAY: _ClassVar[ExchangeMode]
    EXCHANGE_SIGN: _ClassVar[ExchangeMode]

class Refusal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUSAL_NONE: _ClassVar[Refusal]
    REFUSAL_TOO_LARGE: _ClassVar[Refusal]
    REFUSAL_MALFORMED: _ClassVar[Refusal]
    REFUSAL_VERSION: _ClassVar[Refusal]
    REFUSAL_RUN_ID: _ClassVar[Refusal]
    REFUSAL_ROUND: _ClassVar[Refusal]
    REFUSAL_SENDER: _ClassVar[Refusal]
    REFUSAL_SAMPLES: _ClassVar[Refusal]
    REFUSAL_TENSOR: _ClassVar[Refusal]
    REFUSAL_BLOCK_RANGE: _ClassVar[Refusal]
    REFUSAL_K: _ClassVar[Refusal]
    REFUSAL_INDEX_FORMAT: _ClassVar[Refusal]
    REFUSAL_INDEX_LENGTH: _ClassVar[Refusal]
    REFUSAL_INDEX_RANGE: _ClassVar[Refusal]
    REFUSAL_INDEX_ORDER: _ClassVar[Refusal]
    REFUSAL_INDEX_COUNT: _ClassVar[Refusal]
    REFUSAL_VALUE_FORMAT: _ClassVar[Refusal]
    REFUSAL_VALUE_LENGTH: _ClassVar[Refusal]
    REFUSAL_VALUE_NOT_FINITE: _ClassVar[Refusal]
    REFUSAL_COVERAGE: _ClassVar[Refusal]
    REFUSAL_ROUND_CLOSED: _ClassVar[Refusal]
    REFUSAL_NOT_MEMBER: _ClassVar[Refusal]
    REFUSAL_NOT_OWNER: _ClassVar[Refusal]
    REFUSAL_PLAN_MISMATCH: _ClassVar[Refusal]
    REFUSAL_ROUND_UNKNOWN: _ClassVar[Refusal]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    STARTING: _ClassVar[NodeState]
    JOINING: _ClassVar[NodeState]
    TRAINING: _ClassVar[NodeState]
    LEAVING: _ClassVar[NodeState]
    LEFT: _ClassVar[NodeState]
EXCHANGE_MODE_UNSPECIFIED: ExchangeMode
EXCHANGE_RELAY: ExchangeMode
EXCHANGE_SIGN: ExchangeMode
REFUSAL_NONE: Refusal
REFUSAL_TOO_LARGE: Refusal
REFUSAL_MALFORMED: Refusal
REFUSAL_VERSION: Refusal
REFUSAL_RUN_ID: Refusal
REFUSAL_ROUND: Refusal
REFUSAL_SENDER: Refusal
REFUSAL_SAMPLES: Refusal
REFUSAL_TENSOR: Refusal
REFUSAL_BLOCK_RANGE: Refusal
REFUSAL_K: Refusal
REFUSAL_INDEX_FORMAT: Refusal
REFUSAL_INDEX_LENGTH: Refusal
REFUSAL_INDEX_RANGE: Refusal
REFUSAL_INDEX_ORDER: Refusal
REFUSAL_INDEX_COUNT: Refusal
REFUSAL_VALUE_FORMAT: Refusal
REFUSAL_VALUE_LENGTH: Refusal
REFUSAL_VALUE_NOT_FINITE: Refusal
REFUSAL_COVERAGE: Refusal
REFUSAL_ROUND_CLOSED: Refusal
REFUSAL_NOT_MEMBER: Refusal
REFUSAL_NOT_OWNER: Refusal
REFUSAL_PLAN_MISMATCH: Refusal
REFUSAL_ROUND_UNKNOWN: Refusal
NODE_STATE_UNSPECIFIED: NodeState
STARTING: NodeState
JOINING: NodeState
TRAINING: NodeState
LEAVING: NodeState
LEFT: NodeState

class Contribute(_message.Message):
    __slots__ = ("round", "payload", "digest_round", "digest", "leaving", "joining", "client", "plan")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    JOINING_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    round: int
    payload: bytes
    digest_round: int
    digest: bytes
    leaving: bool
    joining: bool
    client: bool
    plan: bytes
    def __init__(self, round: _Optional[int] = ..., payload: _Optional[bytes] = ..., digest_round: _Optional[int] = ..., digest: _Optional[bytes] = ..., leaving: _Optional[bool] = ..., joining: _Optional[bool] = ..., client: _Optional[bool] = ..., plan: _Optional[bytes] = ...) -> None: ...

class Presence(_message.Message):
    __slots__ = ("peer", "digest_round", "digest", "client")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    peer: bytes
    digest_round: int
    digest: bytes
    client: bool
    def __init__(self, peer: _Optional[bytes] = ..., digest_round: _Optional[int] = ..., digest: _Optional[bytes] = ..., client: _Optional[bool] = ...) -> None: ...

class Included(_message.Message):
    __slots__ = ("sender", "samples")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    sender: bytes
    samples: float
    def __init__(self, sender: _Optional[bytes] = ..., samples: _Optional[float] = ...) -> None: ...

class ShardResult(_message.Message):
    __slots__ = ("round", "owner", "status", "refusal", "included", "present", "joiners", "leavers", "mode", "relayed", "sign_bits", "nonzero_blocks")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[ShardResult.Status]
        HAVE: _ClassVar[ShardResult.Status]
        DONT_HAVE: _ClassVar[ShardResult.Status]
        REJECTED: _ClassVar[ShardResult.Status]
    STATUS_UNSPECIFIED: ShardResult.Status
    HAVE: ShardResult.Status
    DONT_HAVE: ShardResult.Status
    REJECTED: ShardResult.Status
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    JOINERS_FIELD_NUMBER: _ClassVar[int]
    LEAVERS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RELAYED_FIELD_NUMBER: _ClassVar[int]
    SIGN_BITS_FIELD_NUMBER: _ClassVar[int]
    NONZERO_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    status: ShardResult.Status
    refusal: Refusal
    included: _containers.RepeatedCompositeFieldContainer[Included]
    present: _containers.RepeatedCompositeFieldContainer[Presence]
    joiners: _containers.RepeatedCompositeFieldContainer[Presence]
    leavers: _containers.RepeatedScalarFieldContainer[bytes]
    mode: ExchangeMode
    relayed: _containers.RepeatedScalarFieldContainer[bytes]
    sign_bits: bytes
    nonzero_blocks: bytes
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., status: _Optional[_Union[ShardResult.Status, str]] = ..., refusal: _Optional[_Union[Refusal, str]] = ..., included: _Optional[_Iterable[_Union[Included, _Mapping]]] = ..., present: _Optional[_Iterable[_Union[Presence, _Mapping]]] = ..., joiners: _Optional[_Iterable[_Union[Presence, _Mapping]]] = ..., leavers: _Optional[_Iterable[bytes]] = ..., mode: _Optional[_Union[ExchangeMode, str]] = ..., relayed: _Optional[_Iterable[bytes]] = ..., sign_bits: _Optional[bytes] = ..., nonzero_blocks: _Optional[bytes] = ...) -> None: ...

class FetchResult(_message.Message):
    __slots__ = ("round", "owner")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ...) -> None: ...

class StateRequest(_message.Message):
    __slots__ = ("min_round",)
    MIN_ROUND_FIELD_NUMBER: _ClassVar[int]
    min_round: int
    def __init__(self, min_round: _Optional[int] = ...) -> None: ...

class StateHeader(_message.Message):
    __slots__ = ("round", "digest", "members", "tensor_bytes", "run_config", "error")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    round: int
    digest: bytes
    members: _containers.RepeatedCompositeFieldContainer[Presence]
    tensor_bytes: _containers.RepeatedScalarFieldContainer[int]
    run_config: str
    error: str
    def __init__(self, round: _Optional[int] = ..., digest: _Optional[bytes] = ..., members: _Optional[_Iterable[_Union[Presence, _Mapping]]] = ..., tensor_bytes: _Optional[_Iterable[int]] = ..., run_config: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("state", "run_config", "maddrs", "client", "round")
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    MADDRS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    state: NodeState
    run_config: str
    maddrs: _containers.RepeatedScalarFieldContainer[str]
    client: bool
    round: int
    def __init__(self, state: _Optional[_Union[NodeState, str]] = ..., run_config: _Optional[str] = ..., maddrs: _Optional[_Iterable[str]] = ..., client: _Optional[bool] = ..., round: _Optional[int] = ...) -> None: ...
