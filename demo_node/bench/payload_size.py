"""Payload-size calculator: bytes per step for a model's shapes, in the reference's format and in ours.

The reference sends int64 indices and fp32 values: 12 bytes per kept coefficient. The paper's table counts that
format (e.g. OLMo-1B at k=32: 110.32 MB per GPU per step); ours is computed exactly by the codec's own sizing.
"""

from __future__ import annotations

from demo_node.core.config import VALUE_MODES
from demo_node.core.layout import Layout
from demo_node.models.gpt import PRESETS, parameter_shapes
from demo_node.models.presets import SHAPES_ONLY
from demo_node.wire.codec import encoded_size

MODELS = {**{name: (lambda n=name: parameter_shapes(n)) for name in PRESETS}, **SHAPES_ONLY}
"""Model name (the GPT presets' names, as everywhere else, and the paper's OLMo-1B) -> its parameter shapes."""


def reference_bytes(layout: Layout) -> int:
    """What the reference puts on the wire: 8-byte index + 4-byte value per kept coefficient."""
    return sum(spec.num_blocks * spec.k * 12 for spec in layout.buckets)


def payload_sizes(model: str, topk: int = 32, chunk: int = 64) -> dict:
    shapes = MODELS[model]()
    layout = Layout.build(shapes, [0] * len(shapes), chunk, topk)
    ref = reference_bytes(layout)
    dense = 4 * layout.num_params
    ours = {mode: encoded_size(layout, mode) for mode in VALUE_MODES}
    return {
        "model": model,
        "params": layout.num_params,
        "topk": topk,
        "chunk": chunk,
        "reference_bytes": ref,
        "dense_fp32_bytes": dense,
        "ours_bytes": ours,
        "ours_over_reference": {m: b / ref for m, b in ours.items()},
        "dense_over_ours": {m: dense / b for m, b in ours.items()},
    }


def format_sizes(r: dict) -> str:
    lines = [
        f"{r['model']}: {r['params']:,} parameters, top-{r['topk']} per block, chunk {r['chunk']}",
        f"  reference format (int64 idx + fp32 val): {r['reference_bytes']:>14,} bytes = {r['reference_bytes'] / 1e6:.3f} MB",
        f"  dense fp32:                              {r['dense_fp32_bytes']:>14,} bytes",
    ]
    for mode, b in r["ours_bytes"].items():
        lines.append(
            f"  ours, {mode:<5} values: {b:>14,} bytes = {b / 1e6:.3f} MB"
            f"  ({r['ours_over_reference'][mode]:.3f} x reference, {r['dense_over_ours'][mode]:.0f} x smaller than dense)"
        )
    return "\n".join(lines)
