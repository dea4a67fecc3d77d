"""GPT sizes, from tiny (tests) to about 1B parameters, and the shapes of the paper's OLMo-1B; no torch here, so
the command line stays quick."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class GPTConfig:
    n_layer: int = 6
    """Transformer blocks."""
    n_head: int = 6
    """Attention heads per block."""
    d_model: int = 384
    """Width of the residual stream."""
    vocab: int = 256
    """Byte-level: one token per byte."""
    context: int = 128
    """Longest sequence the position table covers."""
    bias: bool = True
    """Biases in linear layers and layer norms, as the reference's benchmark model has."""

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, GPTConfig] = {
    # swarm tests: several processes on two shared cores
    "tiny": GPTConfig(n_layer=2, n_head=2, d_model=64, context=64),
    # the model of the optimizer benchmark (10.9M parameters)
    "bench": GPTConfig(n_layer=6, n_head=6, d_model=384, context=128),
    "small": GPTConfig(n_layer=8, n_head=8, d_model=512, context=256),
    "medium": GPTConfig(n_layer=12, n_head=12, d_model=768, context=512),
    "large": GPTConfig(n_layer=24, n_head=16, d_model=1024, context=1024),
    # about 1B parameters: for GPUs
    "1b": GPTConfig(n_layer=20, n_head=16, d_model=2048, context=1024),
}


def olmo_1b_shapes() -> list[tuple[int, ...]]:
    """OLMo-1B: d_model 2048, 16 layers, SwiGLU MLP of 8192 (fused in/gate projection), vocab 50304, tied
    embeddings, non-parametric layer norm: 1,176,764,416 parameters."""
    d, hidden, vocab = 2048, 8192, 50304
    shapes = [(vocab, d)]
    for _ in range(16):
        shapes += [(3 * d, d), (d, d), (2 * hidden, d), (d, hidden)]
    return shapes


SHAPES_ONLY = {"olmo-1b": olmo_1b_shapes}
"""Models known by their parameter shapes alone (the paper's), for payload sizes."""
