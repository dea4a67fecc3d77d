"""Model sizes: byte-level GPTs from tiny (tests) to about 1B parameters, Llama presets of Hugging Face transformers
(built from a config, nothing downloaded) and the shapes of the paper's OLMo-1B; neither torch nor transformers
here, so the command line stays quick."""

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
    "tiny": GPTConfig(n_layer=2, n_head=2, d_model=64, context=64),  # 136,960 parameters
    # convergence between the two: how DeMo's gap to AdamW moves with model size
    "mini": GPTConfig(n_layer=4, n_head=4, d_model=256, context=64),  # 3,307,008
    # the model of the optimizer benchmark
    "bench": GPTConfig(n_layer=6, n_head=6, d_model=384, context=128),  # 10,893,312
    "small": GPTConfig(n_layer=8, n_head=8, d_model=512, context=256),  # 25,613,312
    "medium": GPTConfig(n_layer=12, n_head=12, d_model=768, context=512),  # 85,842,432
    "large": GPTConfig(n_layer=24, n_head=16, d_model=1024, context=1024),  # 303,884,288
    # about 1B parameters: for GPUs
    "1b": GPTConfig(n_layer=20, n_head=16, d_model=2048, context=1024),  # 1,010,315,264
}


@dataclass(frozen=True, kw_only=True)
class LlamaPreset:
    """The fields of a transformers ``LlamaConfig`` that set a Llama's size (the rest are LlamaConfig's defaults:
    SiLU MLP, RMSNorm eps 1e-6, RoPE theta 10000, no biases, untied embeddings)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    """Fewer than the attention heads: grouped-query attention, as TinyLlama and Llama 2 70B have."""
    intermediate_size: int
    vocab_size: int
    """The default: a run's tokenizer sets the real one."""
    context: int
    """Sequence length of a run that names none; the config's max_position_embeddings is the run's."""
    tie_word_embeddings: bool = False

    def config_fields(self, vocab_size: int, context: int) -> dict:
        """Keyword arguments of ``LlamaConfig`` for a run with this vocabulary and sequence length."""
        return {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "intermediate_size": self.intermediate_size,
            "vocab_size": vocab_size,
            "max_position_embeddings": context,
            "tie_word_embeddings": self.tie_word_embeddings,
            # token ids belong to the run's tokenizer, not to the architecture
            "bos_token_id": None,
            "eos_token_id": None,
            "pad_token_id": None,
        }

    def parameter_count(self, vocab_size: int | None = None) -> int:
        """Parameters with this vocabulary (the preset's by default); tests check it against the built model."""
        h, i = self.hidden_size, self.intermediate_size
        kv = self.num_key_value_heads * (h // self.num_attention_heads)
        layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o; k, v; gate, up, down; two RMSNorms
        vocab = self.vocab_size if vocab_size is None else vocab_size
        embeddings = vocab * h * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * layer + embeddings + h  # + the final RMSNorm


LLAMA_PRESETS: dict[str, LlamaPreset] = {
    # CPU tests and small runs: 18,880,896 parameters (12.6M of them outside the embeddings)
    "llama-20m": LlamaPreset(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, num_key_value_heads=2,
                             intermediate_size=1024, vocab_size=8192, context=256),
    # 149,840,640 parameters (49.2M of them in the two embeddings)
    "llama-150m": LlamaPreset(hidden_size=768, num_hidden_layers=16, num_attention_heads=12, num_key_value_heads=4,
                              intermediate_size=2048, vocab_size=32000, context=1024),
    # TinyLlama's shape with 20 layers instead of 22: 1,011,959,808 parameters
    "llama-1b": LlamaPreset(hidden_size=2048, num_hidden_layers=20, num_attention_heads=32, num_key_value_heads=4,
                            intermediate_size=5632, vocab_size=32000, context=2048),
}

MODEL_CHOICES = (*PRESETS, *LLAMA_PRESETS, "config")
"""What a run may train: a GPT preset, a Llama preset, or "config" (any causal-LM config.json)."""


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
