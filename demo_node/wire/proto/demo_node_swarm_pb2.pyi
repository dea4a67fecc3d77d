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
    EXCHANGE_SPARSE: _ClassVar[ExchangeMode]

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
    REFUSAL_SIGNATURE: _ClassVar[Refusal]
    REFUSAL_STATEMENT: _ClassVar[Refusal]
    REFUSAL_UNBOUNDED: _ClassVar[Refusal]
    REFUSAL_NOT_VERIFIER: _ClassVar[Refusal]
    REFUSAL_NOT_ALLOWED: _ClassVar[Refusal]
    REFUSAL_BUSY: _ClassVar[Refusal]
    REFUSAL_MESSAGE_TOO_LARGE: _ClassVar[Refusal]

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
EXCHANGE_SPARSE: ExchangeMode
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
REFUSAL_SIGNATURE: Refusal
REFUSAL_STATEMENT: Refusal
REFUSAL_UNBOUNDED: Refusal
REFUSAL_NOT_VERIFIER: Refusal
REFUSAL_NOT_ALLOWED: Refusal
REFUSAL_BUSY: Refusal
REFUSAL_MESSAGE_TOO_LARGE: Refusal
NODE_STATE_UNSPECIFIED: NodeState
STARTING: NodeState
JOINING: NodeState
TRAINING: NodeState
LEAVING: NodeState
LEFT: NodeState

class Signed(_message.Message):
    __slots__ = ("body", "signature", "public_key")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    public_key: bytes
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("peer", "run_id", "round", "digest_round", "digest", "client", "joining", "leaving", "plan", "accused")
    PEER_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    JOINING_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ACCUSED_FIELD_NUMBER: _ClassVar[int]
    peer: bytes
    run_id: str
    round: int
    digest_round: int
    digest: bytes
    client: bool
    joining: bool
    leaving: bool
    plan: bytes
    accused: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, peer: _Optional[bytes] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., digest_round: _Optional[int] = ..., digest: _Optional[bytes] = ..., client: _Optional[bool] = ..., joining: _Optional[bool] = ..., leaving: _Optional[bool] = ..., plan: _Optional[bytes] = ..., accused: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Contribute(_message.Message):
    __slots__ = ("round", "statement", "payload", "plan", "joining", "verify")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    JOINING_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    round: int
    statement: Signed
    payload: Signed
    plan: bytes
    joining: bool
    verify: Verify
    def __init__(self, round: _Optional[int] = ..., statement: _Optional[_Union[Signed, _Mapping]] = ..., payload: _Optional[_Union[Signed, _Mapping]] = ..., plan: _Optional[bytes] = ..., joining: _Optional[bool] = ..., verify: _Optional[_Union[Verify, _Mapping]] = ...) -> None: ...

class ShardBody(_message.Message):
    __slots__ = ("round", "owner", "mode", "included", "inputs_hash", "statements", "sign_bits", "nonzero_blocks", "plan", "cut")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELD_NUMBER: _ClassVar[int]
    INPUTS_HASH_FIELD_NUMBER: _ClassVar[int]
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    SIGN_BITS_FIELD_NUMBER: _ClassVar[int]
    NONZERO_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CUT_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    mode: ExchangeMode
    included: bytes
    inputs_hash: bytes
    statements: _containers.RepeatedCompositeFieldContainer[Signed]
    sign_bits: bytes
    nonzero_blocks: bytes
    plan: bytes
    cut: bytes
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., mode: _Optional[_Union[ExchangeMode, str]] = ..., included: _Optional[bytes] = ..., inputs_hash: _Optional[bytes] = ..., statements: _Optional[_Iterable[_Union[Signed, _Mapping]]] = ..., sign_bits: _Optional[bytes] = ..., nonzero_blocks: _Optional[bytes] = ..., plan: _Optional[bytes] = ..., cut: _Optional[bytes] = ...) -> None: ...

class ShardResult(_message.Message):
    __slots__ = ("status", "refusal", "body", "relayed", "current_round")
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
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    RELAYED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    status: ShardResult.Status
    refusal: Refusal
    body: Signed
    relayed: _containers.RepeatedCompositeFieldContainer[Signed]
    current_round: int
    def __init__(self, status: _Optional[_Union[ShardResult.Status, str]] = ..., refusal: _Optional[_Union[Refusal, str]] = ..., body: _Optional[_Union[Signed, _Mapping]] = ..., relayed: _Optional[_Iterable[_Union[Signed, _Mapping]]] = ..., current_round: _Optional[int] = ...) -> None: ...

class FetchResult(_message.Message):
    __slots__ = ("round", "owner", "confirm")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    confirm: bool
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., confirm: _Optional[bool] = ...) -> None: ...

class Verify(_message.Message):
    __slots__ = ("round", "owner", "payload")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    payload: Signed
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., payload: _Optional[_Union[Signed, _Mapping]] = ...) -> None: ...

class VerdictBody(_message.Message):
    __slots__ = ("round", "owner", "verifier", "body_hash", "finding", "sign_bits", "nonzero_blocks", "plan", "cut")
    class Finding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FINDING_UNSPECIFIED: _ClassVar[VerdictBody.Finding]
        CORRECT: _ClassVar[VerdictBody.Finding]
        WRONG: _ClassVar[VerdictBody.Finding]
        UNVERIFIED: _ClassVar[VerdictBody.Finding]
        WITHHELD: _ClassVar[VerdictBody.Finding]
        MISSING: _ClassVar[VerdictBody.Finding]
    FINDING_UNSPECIFIED: VerdictBody.Finding
    CORRECT: VerdictBody.Finding
    WRONG: VerdictBody.Finding
    UNVERIFIED: VerdictBody.Finding
    WITHHELD: VerdictBody.Finding
    MISSING: VerdictBody.Finding
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    BODY_HASH_FIELD_NUMBER: _ClassVar[int]
    FINDING_FIELD_NUMBER: _ClassVar[int]
    SIGN_BITS_FIELD_NUMBER: _ClassVar[int]
    NONZERO_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CUT_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    verifier: bytes
    body_hash: bytes
    finding: VerdictBody.Finding
    sign_bits: bytes
    nonzero_blocks: bytes
    plan: bytes
    cut: bytes
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., verifier: _Optional[bytes] = ..., body_hash: _Optional[bytes] = ..., finding: _Optional[_Union[VerdictBody.Finding, str]] = ..., sign_bits: _Optional[bytes] = ..., nonzero_blocks: _Optional[bytes] = ..., plan: _Optional[bytes] = ..., cut: _Optional[bytes] = ...) -> None: ...

class VerdictReply(_message.Message):
    __slots__ = ("status", "refusal", "verdict", "not_audited")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    NOT_AUDITED_FIELD_NUMBER: _ClassVar[int]
    status: ShardResult.Status
    refusal: Refusal
    verdict: Signed
    not_audited: bool
    def __init__(self, status: _Optional[_Union[ShardResult.Status, str]] = ..., refusal: _Optional[_Union[Refusal, str]] = ..., verdict: _Optional[_Union[Signed, _Mapping]] = ..., not_audited: _Optional[bool] = ...) -> None: ...

class InputsRequest(_message.Message):
    __slots__ = ("round", "owner", "senders")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SENDERS_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    senders: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ..., senders: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Inputs(_message.Message):
    __slots__ = ("payloads", "body")
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    payloads: _containers.RepeatedCompositeFieldContainer[Signed]
    body: Signed
    def __init__(self, payloads: _Optional[_Iterable[_Union[Signed, _Mapping]]] = ..., body: _Optional[_Union[Signed, _Mapping]] = ...) -> None: ...

class FetchVerdict(_message.Message):
    __slots__ = ("round", "owner")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    round: int
    owner: bytes
    def __init__(self, round: _Optional[int] = ..., owner: _Optional[bytes] = ...) -> None: ...

class EvidenceRequest(_message.Message):
    __slots__ = ("accused",)
    ACCUSED_FIELD_NUMBER: _ClassVar[int]
    accused: bytes
    def __init__(self, accused: _Optional[bytes] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("accused", "round", "claim", "judged", "inputs", "kind")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Evidence.Kind]
        LIE: _ClassVar[Evidence.Kind]
        FALSE_VERDICT: _ClassVar[Evidence.Kind]
        BODY_EQUIVOCATION: _ClassVar[Evidence.Kind]
        VERDICT_EQUIVOCATION: _ClassVar[Evidence.Kind]
    KIND_UNSPECIFIED: Evidence.Kind
    LIE: Evidence.Kind
    FALSE_VERDICT: Evidence.Kind
    BODY_EQUIVOCATION: Evidence.Kind
    VERDICT_EQUIVOCATION: Evidence.Kind
    ACCUSED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    accused: bytes
    round: int
    claim: Signed
    judged: Signed
    inputs: _containers.RepeatedCompositeFieldContainer[Signed]
    kind: Evidence.Kind
    def __init__(self, accused: _Optional[bytes] = ..., round: _Optional[int] = ..., claim: _Optional[_Union[Signed, _Mapping]] = ..., judged: _Optional[_Union[Signed, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[Signed, _Mapping]]] = ..., kind: _Optional[_Union[Evidence.Kind, str]] = ...) -> None: ...

class PeerStanding(_message.Message):
    __slots__ = ("peer", "demoted", "benched_until", "offenses", "faults", "unknown")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DEMOTED_FIELD_NUMBER: _ClassVar[int]
    BENCHED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    OFFENSES_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    peer: bytes
    demoted: bool
    benched_until: int
    offenses: int
    faults: _containers.RepeatedScalarFieldContainer[str]
    unknown: int
    def __init__(self, peer: _Optional[bytes] = ..., demoted: _Optional[bool] = ..., benched_until: _Optional[int] = ..., offenses: _Optional[int] = ..., faults: _Optional[_Iterable[str]] = ..., unknown: _Optional[int] = ...) -> None: ...

class StateRequest(_message.Message):
    __slots__ = ("min_round",)
    MIN_ROUND_FIELD_NUMBER: _ClassVar[int]
    min_round: int
    def __init__(self, min_round: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("peer", "client")
    PEER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    peer: bytes
    client: bool
    def __init__(self, peer: _Optional[bytes] = ..., client: _Optional[bool] = ...) -> None: ...

class StateHeader(_message.Message):
    __slots__ = ("round", "digest", "members", "tensor_bytes", "run_config", "error", "statements", "demoted", "standing")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    DEMOTED_FIELD_NUMBER: _ClassVar[int]
    STANDING_FIELD_NUMBER: _ClassVar[int]
    round: int
    digest: bytes
    members: _containers.RepeatedCompositeFieldContainer[Member]
    tensor_bytes: _containers.RepeatedScalarFieldContainer[int]
    run_config: str
    error: str
    statements: _containers.RepeatedCompositeFieldContainer[Signed]
    demoted: _containers.RepeatedScalarFieldContainer[bytes]
    standing: _containers.RepeatedCompositeFieldContainer[PeerStanding]
    def __init__(self, round: _Optional[int] = ..., digest: _Optional[bytes] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., tensor_bytes: _Optional[_Iterable[int]] = ..., run_config: _Optional[str] = ..., error: _Optional[str] = ..., statements: _Optional[_Iterable[_Union[Signed, _Mapping]]] = ..., demoted: _Optional[_Iterable[bytes]] = ..., standing: _Optional[_Iterable[_Union[PeerStanding, _Mapping]]] = ...) -> None: ...

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
