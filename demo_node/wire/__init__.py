"""The wire formats: protobuf payloads of sparse DCT coefficients (packed, checked on the way in), the round
protocol's messages and the local control API (``proto/``, generated into ``wire/proto``). The payload's bytes are
packed and unpacked only here (:mod:`demo_node.wire.codec`); the round protocol's messages are built and read with
the generated classes by the layers that speak them (``swarm/``, ``node/``), and signed over their canonical bytes
(:mod:`demo_node.swarm.signing`).

Import what you need from its modules (``demo_node.wire.codec``, ``demo_node.wire.errors``): this package itself
imports nothing, so the control API's client starts without torch.
"""
