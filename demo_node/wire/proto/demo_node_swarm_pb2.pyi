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
EXCHANGE_MODE_UNSPECIFIED: ExchangeMode
EXCHANGE_RELAY: ExchangeMode
EXCHANGE_SIGN: ExchangeMode

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
    __slots__ = ("round", "owner", "status", "error", "included", "present", "joiners", "leavers", "mode", "relayed", "sign_bits", "nonzero_blocks")
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
    ERROR_FIELD_NUMBER: _ClassVar[int]
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
    error: str
    included: _containers.RepeatedCompositeFieldContainer[Included]
    present: _containers.RepeatedCompositeFieldContainer[Presence]
    joiners: _containers.RepeatedCompositeFieldContainer[Presence]
    leavers: _containers.RepeatedScalarFieldContainer[bytes]
    mode: ExchangeMode
    relayed: _containers.RepeatedScalarFieldContainer[bytes]
    sign_bits: bytes
    nonzero_blocks: bytes
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., status: _Optional[_Union[ShardResult.Status, str]] = ..., error: _Optional[str] = ..., included: _Optional[_Iterable[_Union[Included, _Mapping]]] = ..., present: _Optional[_Iterable[_Union[Presence, _Mapping]]] = ..., joiners: _Optional[_Iterable[_Union[Presence, _Mapping]]] = ..., leavers: _Optional[_Iterable[bytes]] = ..., mode: _Optional[_Union[ExchangeMode, str]] = ..., relayed: _Optional[_Iterable[bytes]] = ..., sign_bits: _Optional[bytes] = ..., nonzero_blocks: _Optional[bytes] = ...) -> None: ...

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
