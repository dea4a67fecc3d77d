from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IndexFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INDEX_FORMAT_UNSPECIFIED: _ClassVar[IndexFormat]
    INDEX_PACKED: _ClassVar[IndexFormat]
    INDEX_BITMASK: _ClassVar[IndexFormat]
    INDEX_FULL: _ClassVar[IndexFormat]
    INDEX_ELIAS_FANO: _ClassVar[IndexFormat]

class ValueFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_FORMAT_UNSPECIFIED: _ClassVar[ValueFormat]
    VALUE_FP32: _ClassVar[ValueFormat]
    VALUE_FP16: _ClassVar[ValueFormat]
    VALUE_BF16: _ClassVar[ValueFormat]
    VALUE_INT8: _ClassVar[ValueFormat]
    VALUE_SIGN: _ClassVar[ValueFormat]
INDEX_FORMAT_UNSPECIFIED: IndexFormat
INDEX_PACKED: IndexFormat
INDEX_BITMASK: IndexFormat
INDEX_FULL: IndexFormat
INDEX_ELIAS_FANO: IndexFormat
VALUE_FORMAT_UNSPECIFIED: ValueFormat
VALUE_FP32: ValueFormat
VALUE_FP16: ValueFormat
VALUE_BF16: ValueFormat
VALUE_INT8: ValueFormat
VALUE_SIGN: ValueFormat

class Payload(_message.Message):
    __slots__ = ("version", "run_id", "round", "sender", "samples", "entries")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    version: int
    run_id: str
    round: int
    sender: bytes
    samples: float
    entries: _containers.RepeatedCompositeFieldContainer[TensorEntry]
    def __init__(self, version: _Optional[int] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., sender: _Optional[bytes] = ..., samples: _Optional[float] = ..., entries: _Optional[_Iterable[_Union[TensorEntry, _Mapping]]] = ...) -> None: ...

class TensorEntry(_message.Message):
    __slots__ = ("tensor", "first_block", "num_blocks", "k", "index_format", "indices", "value_format", "values", "scales")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    FIRST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    NUM_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    INDEX_FORMAT_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    tensor: int
    first_block: int
    num_blocks: int
    k: int
    index_format: IndexFormat
    indices: bytes
    value_format: ValueFormat
    values: bytes
    scales: bytes
    def __init__(self, tensor: _Optional[int] = ..., first_block: _Optional[int] = ..., num_blocks: _Optional[int] = ..., k: _Optional[int] = ..., index_format: _Optional[_Union[IndexFormat, str]] = ..., indices: _Optional[bytes] = ..., value_format: _Optional[_Union[ValueFormat, str]] = ..., values: _Optional[bytes] = ..., scales: _Optional[bytes] = ...) -> None: ...
