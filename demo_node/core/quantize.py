"""Precision of the transmitted coefficient values: full, half, 8-bit with a per-block scale, or sign bits.

The optimizer quantises before it subtracts what it transmitted from its momentum, so whatever the rounding
removes stays in the momentum (error feedback) and is sent in a later round. The sign step of DeMo forgives
coarse values: measured on a small GPT, fp32, fp16, int8 and sign values gave the same loss within noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from demo_node.core.config import VALUE_MODES

_FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_FP16_MAX = 65504.0


@dataclass
class QuantizedValues:
    """Kept coefficient values of N blocks (K per block) in one of :data:`VALUE_MODES`."""

    mode: str
    codes: torch.Tensor
    """(N, K): the float values for fp32/fp16/bf16, int8 codes for int8, bool (True = negative) for sign."""
    scales: torch.Tensor | None = None
    """(N,) float32 per-block scale for int8 and sign; None otherwise."""

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The values as float32 (N, K): exactly what every peer that decodes them will use (float64 where a caller
        must not overflow on a hostile scale)."""
        if self.mode in _FLOAT_DTYPES:
            return self.codes.to(dtype)
        assert self.scales is not None
        scale = self.scales.to(dtype).unsqueeze(1)
        if self.mode == "int8":
            return self.codes.to(dtype) * scale
        if self.mode == "sign":
            return torch.where(self.codes, -scale, scale)
        raise ValueError(f"unknown value mode {self.mode!r}")

    def rows(self, start: int, stop: int) -> "QuantizedValues":
        """The values of blocks [start, stop)."""
        scales = None if self.scales is None else self.scales[start:stop]
        return QuantizedValues(self.mode, self.codes[start:stop], scales)

    def to(self, device: torch.device | str) -> "QuantizedValues":
        scales = None if self.scales is None else self.scales.to(device)
        return QuantizedValues(self.mode, self.codes.to(device), scales)


def quantize(values: torch.Tensor, mode: str) -> QuantizedValues:
    """Quantise float32 values (N, K) block by block."""
    if mode == "fp32":
        return QuantizedValues(mode, values.to(torch.float32))
    if mode == "fp16":
        # clamp rather than let a huge momentum become inf, which every decoder would reject
        return QuantizedValues(mode, values.clamp(-_FP16_MAX, _FP16_MAX).to(torch.float16))
    if mode == "bf16":
        return QuantizedValues(mode, values.to(torch.bfloat16))
    if mode == "int8":
        scales = values.abs().amax(dim=1) / 127.0
        safe = torch.where(scales > 0, scales, torch.ones_like(scales))
        codes = torch.round(values / safe.unsqueeze(1)).clamp_(-127, 127).to(torch.int8)
        return QuantizedValues(mode, codes, scales)
    if mode == "sign":
        return QuantizedValues(mode, values < 0, values.abs().mean(dim=1))
    raise ValueError(f"unknown value mode {mode!r}; choose one of {', '.join(VALUE_MODES)}")
