"""The DeMo math: chunked DCT, top-k, quantised values, aggregation, the optimizer.

This package imports torch only; it knows nothing of the network or the wire format.
"""

from demo_node.core.aggregate import Aggregate, aggregate
from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.layout import BucketSpec, Layout, TensorSpec
from demo_node.core.optimizer import DeMo, DeMoConfig
from demo_node.core.quantize import VALUE_MODES, QuantizedValues

__all__ = [
    "Aggregate",
    "aggregate",
    "BucketPart",
    "Contribution",
    "BucketSpec",
    "Layout",
    "TensorSpec",
    "DeMo",
    "DeMoConfig",
    "VALUE_MODES",
    "QuantizedValues",
]
