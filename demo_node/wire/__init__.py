"""The wire format: protobuf payloads of sparse DCT coefficients, packed, and checked on the way in.

The only package that knows protobuf; it turns :mod:`demo_node.core` contributions into bytes and back.
"""

from demo_node.wire.codec import DecodedPayload, decode, encode, encoded_size
from demo_node.wire.errors import REASONS, PayloadError

__all__ = ["DecodedPayload", "decode", "encode", "encoded_size", "REASONS", "PayloadError"]
