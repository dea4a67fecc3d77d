"""Our byte-level GPT as transformers' ``GPT2LMHeadModel``: the same block (pre-norm, fused qkv, exact-erf GELU
MLP of 4x, biases, learned positions, untied head), so the same weights give the same logits."""

from __future__ import annotations

import torch

from demo_node.models.gpt import GPT
from demo_node.models.presets import GPTConfig


def gpt2_config(cfg: GPTConfig):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=cfg.vocab, n_positions=cfg.context, n_embd=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
        activation_function="gelu",  # ACT2FN's exact GELU, as nn.functional.gelu; GPT-2's own is the tanh one
        layer_norm_epsilon=1e-5, tie_word_embeddings=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )


def to_gpt2(model: GPT):
    """A GPT2LMHeadModel holding ``model``'s weights (copies), in eval mode."""
    from transformers import GPT2LMHeadModel

    cfg = model.cfg
    dtype = next(model.parameters()).dtype
    ours = {k: v.detach() for k, v in model.state_dict().items()}

    def bias(name: str, size: int) -> torch.Tensor:
        # a GPT without biases is GPT-2 with zero biases
        return ours.get(name, torch.zeros(size, dtype=dtype))

    state = {
        "transformer.wte.weight": ours["wte.weight"],
        "transformer.wpe.weight": ours["wpe.weight"],
        "transformer.ln_f.weight": ours["ln_f.weight"],
        "transformer.ln_f.bias": bias("ln_f.bias", cfg.d_model),
        "lm_head.weight": ours["head.weight"],
    }
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"transformer.h.{i}."
        for ln_ours, ln_theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            state[f"{dst}{ln_theirs}.weight"] = ours[f"{src}{ln_ours}.weight"]
            state[f"{dst}{ln_theirs}.bias"] = bias(f"{src}{ln_ours}.bias", cfg.d_model)
        for lin_ours, lin_theirs in (("qkv", "attn.c_attn"), ("proj", "attn.c_proj"), ("fc", "mlp.c_fc"),
                                     ("fc_out", "mlp.c_proj")):
            weight = ours[f"{src}{lin_ours}.weight"]
            # GPT-2's Conv1D computes x @ W + b: its weight is the transpose of nn.Linear's
            state[f"{dst}{lin_theirs}.weight"] = weight.t().contiguous()
            state[f"{dst}{lin_theirs}.bias"] = bias(f"{src}{lin_ours}.bias", weight.shape[0])
    hf = GPT2LMHeadModel(gpt2_config(cfg)).to(dtype)
    hf.load_state_dict(state, strict=True)
    return hf.eval()
