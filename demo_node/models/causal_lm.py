"""A Hugging Face causal LM behind the node's model interface: ``forward(idx, targets=None)`` gives logits, or the
mean cross-entropy of already-shifted targets."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class CausalLM(nn.Module):
    """Holds the transformers model as ``.hf``: parameters are the HF model's, in its ``parameters()`` order."""

    def __init__(self, hf: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.hf = hf
        self.spec = spec

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.hf(input_ids=idx, use_cache=False, return_dict=True).logits  # (B, T, V)
        if targets is None:
            return logits
        # fp32 for the softmax: bf16 logits lose the small probabilities the loss is made of
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
