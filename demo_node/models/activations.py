"""Bytes that the forward pass keeps for the backward pass of a transformer, by formula (for the memory estimate).

The per-layer constants below count the tensors autograd saves (unique storages, parameters excluded) in our GPT
block and in transformers' Llama decoder layer with SDPA, whose fused (flash or CPU flash) kernels keep only the
attention output and a per-row log-sum-exp: nothing of size context^2. Units: bytes per token per layer, where h
is the width, kv the width of the keys (kv heads * head dim) and i the MLP's inner width.

Llama, fp32 (32h + 8kv + 16i): each of the two RMSNorms keeps its input, the normalised input and its output (3h);
attention keeps q after RoPE and its output (2h), k after RoPE and v (2kv); the SwiGLU MLP keeps gate, SiLU(gate),
up and their product (4i); all 4 bytes.
Llama, fp32 weights under bf16 autocast (30h + 4kv + 8i): the norms stay fp32 (input and normalised: 4h + 4h
each), and autocast casts a norm's output to bf16 once per projection that reads it (3 for q, k, v, 2 for gate,
up: 2h each); the rest is bf16.
Llama, bf16 weights (20h + 4kv + 8i): a norm keeps an fp32 copy of its input, the normalised input cast back to
bf16 and its output (8h); the rest is bf16.
GPT, fp32 (64d): each LayerNorm keeps its input and output (2d each), the fused qkv output (3d), the attention
output (d: the projection reads it as a view), the MLP's inner activation before and after GELU (4d each).
GPT under bf16 autocast (36d): LayerNorm inputs fp32 (4d each), outputs cast to bf16 (2d each), the rest bf16.
GPT, bf16 weights (32d): everything bf16.

Under autocast, the bf16 copies of the weights (2 bytes per weight of every linear layer, the head included)
are kept too: autocast caches them for the forward and autograd keeps them for the backward.
The logits cost ``batch * context * vocab * 4`` twice: the loss's fp32 log-softmax is kept, and the backward
makes the gradient of the logits from it (2 bytes, not 4, for our GPT with bf16 weights and no autocast: its loss
runs in bf16).
With gradient checkpointing a layer keeps only its input (the residual stream: 4 bytes, 2 with bf16 weights),
and one layer's activations exist at a time, when the backward recomputes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    """What the activation formula needs of an architecture."""

    family: str
    """"gpt" (our GPT block) or "llama" (a transformers decoder layer: RMSNorm, RoPE attention, gated MLP)."""
    width: int
    layers: int
    inner: int
    """The MLP's inner width."""
    kv: int
    """Width of the keys (and of the values)."""
    vocab: int
    linear_weights: int
    """Weights of the linear layers (the head included): what autocast casts to bf16."""


def shape_of(spec: dict[str, Any]) -> Shape:
    """The formula's view of a spec; a config.json of another family is counted as a Llama-like decoder."""
    c = spec["config"]
    if spec["kind"] == "gpt":
        d, n = c["d_model"], c["n_layer"]
        return Shape("gpt", d, n, 4 * d, d, c["vocab"], n * 12 * d * d + c["vocab"] * d)
    c = c.get("text_config", c) if isinstance(c.get("text_config"), dict) else c
    h = _first(c, "hidden_size", "n_embd", "d_model", "dim")
    n = _first(c, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(c, "num_attention_heads", "n_head", "num_heads")
    head_dim = c.get("head_dim") or h // heads
    kv = (c.get("num_key_value_heads") or heads) * head_dim
    inner = c.get("intermediate_size") or c.get("n_inner") or c.get("ffn_dim") or 4 * h
    vocab = c["vocab_size"]
    gated = 3 if spec["kind"] == "hf" and c.get("model_type") not in ("gpt2", "gpt_neo", "gpt_neox", "opt") else 2
    per_layer = 2 * h * heads * head_dim + 2 * h * kv + gated * h * inner
    return Shape("llama", h, n, inner, kv, vocab, n * per_layer + vocab * h)


def _first(config: dict, *keys: str) -> int:
    for key in keys:
        if isinstance(config.get(key), int):
            return config[key]
    raise ValueError(f"model config states none of {', '.join(keys)}: cannot estimate its activations")


def _per_layer(s: Shape, mode: str) -> float:
    """Bytes per token that one layer keeps (see the module docstring)."""
    h, kv, i = s.width, s.kv, s.inner
    if s.family == "gpt":
        return {"fp32": 64 * h, "autocast": 36 * h, "bf16": 32 * h}[mode]
    return {"fp32": 32 * h + 8 * kv + 16 * i, "autocast": 30 * h + 4 * kv + 8 * i, "bf16": 20 * h + 4 * kv + 8 * i}[mode]


def _final_norm(s: Shape, mode: str) -> float:
    if s.family == "gpt":
        return {"fp32": 8, "autocast": 6, "bf16": 4}[mode] * s.width
    return {"fp32": 12, "autocast": 10, "bf16": 8}[mode] * s.width


def activation_bytes(s: Shape, batch: int, context: int, *, param_dtype: str, autocast_bf16: bool,
                     grad_checkpointing: bool) -> int:
    """Bytes the forward pass keeps for the backward one, the logits' and autocast's weight copies included."""
    mode = "bf16" if param_dtype == "bf16" else ("autocast" if autocast_bf16 else "fp32")
    tokens = batch * context
    layer = _per_layer(s, mode) * tokens
    if grad_checkpointing:
        residual = 2 if param_dtype == "bf16" else 4
        blocks = s.layers * residual * s.width * tokens + layer
    else:
        blocks = s.layers * layer
    logits = 2 * tokens * s.vocab * (2 if s.family == "gpt" and mode == "bf16" and not autocast_bf16 else 4)
    casts = 2 * s.linear_weights if mode == "autocast" else 0
    return int(blocks + _final_norm(s, mode) * tokens + logits + casts)
