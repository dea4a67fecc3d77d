"""The DeMo math: chunked DCT, top-k, quantised values, aggregation, the optimizer.

This package imports torch only; it knows nothing of the network or the wire format. Names are loaded on first use,
so that the torch-free config (:mod:`demo_node.core.config`) can be read without importing torch.
"""

from importlib import import_module

_WHERE = {
    "Aggregate": "aggregate",
    "aggregate": "aggregate",
    "BucketPart": "contribution",
    "Contribution": "contribution",
    "BucketSpec": "layout",
    "Layout": "layout",
    "TensorSpec": "layout",
    "DeMo": "optimizer",
    "DeMoConfig": "config",
    "VALUE_MODES": "config",
    "QuantizedValues": "quantize",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"demo_node.core.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'demo_node.core' has no attribute {name!r}")
