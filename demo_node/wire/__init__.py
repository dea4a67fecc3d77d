"""The wire formats: protobuf payloads of sparse DCT coefficients (packed, checked on the way in), the round
protocol's messages and the local control API (``proto/``). The only package that knows protobuf.

Import what you need from its modules (``demo_node.wire.codec``, ``demo_node.wire.errors``): this package itself
imports nothing, so the control API's client starts without torch.
"""
