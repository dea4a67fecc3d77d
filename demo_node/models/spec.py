"""A model's spec: a JSON-able dict that fully defines its architecture (hashed into the run's identity), and the
model built from it.

``{"kind": "gpt", "config": GPTConfig fields}`` for the byte-level GPT presets; ``{"kind": "hf", "architecture":
"LlamaForCausalLM", "config": the transformers config as canonical JSON}`` for Hugging Face causal LMs (the Llama
presets and any ``config.json``). The spec holds a config's content, never its path, and none of the keys that
change with the transformers version or the machine. transformers is imported only where an HF model is built.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from demo_node.errors import DemoNodeError
from demo_node.models.presets import LLAMA_PRESETS, PRESETS, GPTConfig

VOLATILE_KEYS = frozenset({
    "transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures", "auto_map", "_commit_hash",
    "output_attentions", "output_hidden_states", "return_dict", "use_cache", "id2label", "label2id", "problem_type",
    "_attn_implementation_autoset",
})
"""Config keys that say nothing about the architecture (versions, paths, dtypes, output switches, labels)."""
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
"""Where configs keep their longest sequence, in the order looked for."""
DEFAULT_CONTEXT_CAP = 2048
"""A config.json's sequence length as a run's default is capped here: long-context models state 128k."""


class SpecError(DemoNodeError, ValueError):
    """A model choice or spec that does not make a model (the message names the culprit)."""


# -- the spec ------------------------------------------------------------------------------------------------------
def model_spec(model: str, model_config: str | None, vocab_size: int, context: int) -> dict[str, Any]:
    """The spec of a GPT preset, a Llama preset or (``model == "config"``) the Hugging Face config.json at
    ``model_config``, for a tokenizer of ``vocab_size`` tokens and sequences of ``context`` (0: the model's own)."""
    if model in PRESETS:
        return _gpt_spec(model, vocab_size, context)
    if model in LLAMA_PRESETS:
        preset = LLAMA_PRESETS[model]
        from transformers import LlamaConfig

        config = LlamaConfig(**preset.config_fields(vocab_size, context or preset.context))
        return {"kind": "hf", "architecture": "LlamaForCausalLM", "config": canonical_config(config)}
    if model == "config":
        if not model_config:
            raise SpecError("model 'config' needs the path of a Hugging Face config.json (--model-config)")
        return _config_file_spec(Path(model_config), vocab_size, context)
    choices = ", ".join([*PRESETS, *LLAMA_PRESETS, "config"])
    raise SpecError(f"unknown model {model!r}; choose one of {choices}")


def _gpt_spec(name: str, vocab_size: int, context: int) -> dict[str, Any]:
    cfg = PRESETS[name]
    if vocab_size != cfg.vocab:
        raise SpecError(f"the GPT preset {name!r} is byte-level ({cfg.vocab} tokens) but the tokenizer has "
                        f"{vocab_size}; use the byte tokenizer, or a Llama preset for another vocabulary")
    if context > cfg.context:
        raise SpecError(f"context {context} is longer than the GPT preset {name!r}'s position table "
                        f"({cfg.context}); use --context {cfg.context} or less, or a larger preset")
    return {"kind": "gpt", "config": cfg.as_dict()}


def _config_file_spec(path: Path, vocab_size: int, context: int) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"model config {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise SpecError(f"model config {path}: not a Hugging Face config.json (it has no \"model_type\")")
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = raw["model_type"]
    if model_type not in CONFIG_MAPPING:
        raise SpecError(f"model config {path}: model_type {model_type!r} is unknown to this transformers")
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if not isinstance(architecture, str):
        raise SpecError(f"model config {path}: transformers has no causal-LM model for model_type {model_type!r}")
    try:
        config = CONFIG_MAPPING[model_type].from_dict(raw)
        model_class = hf_class(architecture)
        if getattr(model_class, "config_class", type(config)) is not type(config):
            config = config.get_text_config()  # a composite config whose causal LM is built from its text part
        text = config.get_text_config()  # the config itself, or the text part of a multimodal one
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise SpecError(f"model config {path}: transformers cannot read it ({type(exc).__name__}: {exc})") from exc
    fixed = getattr(text, "vocab_size", None)
    if fixed is None or not _states_vocab(raw):
        text.vocab_size = vocab_size
    elif fixed != vocab_size:
        raise SpecError(f"model config {path}: its vocab_size is {fixed} but the tokenizer has {vocab_size} tokens; "
                        f"remove vocab_size from the file (it is then the tokenizer's) or use a tokenizer of {fixed}")
    limit = positions_of(text)
    if context and limit is not None and limit < context:
        raise SpecError(f"model config {path}: it covers {limit} positions, fewer than the context {context}")
    return {"kind": "hf", "architecture": architecture, "config": canonical_config(config)}


def _states_vocab(raw: dict) -> bool:
    return "vocab_size" in raw or any(isinstance(v, dict) and "vocab_size" in v for v in raw.values())


def positions_of(config) -> int | None:
    """The longest sequence a transformers (text) config states, if it states one."""
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def canonical_config(config) -> dict[str, Any]:
    """A transformers config as plain JSON without the volatile keys: the same architecture gives the same dict."""
    def strip(d: dict) -> dict:
        return {k: strip(v) if isinstance(v, dict) and "model_type" in v else v
                for k, v in d.items() if k not in VOLATILE_KEYS}

    return json.loads(json.dumps(strip(config.to_dict()), sort_keys=True, allow_nan=False))


def default_context(spec: dict[str, Any]) -> int:
    """The sequence length of a run that names none: the GPT's position table, a Llama preset's length, a
    config.json's positions (at most :data:`DEFAULT_CONTEXT_CAP`)."""
    check_spec(spec)
    if spec["kind"] == "gpt":
        return int(spec["config"]["context"])
    config = spec["config"]
    config = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    for key in POSITION_KEYS:
        if isinstance(config.get(key), int):
            return min(config[key], DEFAULT_CONTEXT_CAP)
    raise SpecError(f"model spec ({spec['architecture']}): its config states no sequence length; give --context")


def check_spec(spec: Any) -> None:
    """Raise SpecError unless ``spec`` has the shape of a model spec."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("gpt", "hf") or not isinstance(spec.get("config"), dict):
        raise SpecError(f"not a model spec (a dict with kind 'gpt' or 'hf' and a config): {str(spec)[:200]}")
    if spec["kind"] == "hf" and not isinstance(spec.get("architecture"), str):
        raise SpecError("model spec of kind 'hf' has no architecture (a transformers class name)")


# -- the model -----------------------------------------------------------------------------------------------------
def hf_class(architecture: str):
    """The transformers model class of that name."""
    import transformers

    cls = getattr(transformers, architecture, None)
    if cls is None:
        raise SpecError(f"model spec: transformers {transformers.__version__} has no class {architecture!r}")
    return cls


def hf_config(spec: dict[str, Any]):
    """The transformers config of an 'hf' spec."""
    check_spec(spec)
    from transformers import CONFIG_MAPPING

    config = dict(spec["config"])
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise SpecError(f"model spec: model_type {model_type!r} is unknown to this transformers")
    return CONFIG_MAPPING[model_type].from_dict(config)


def _hf_model(spec: dict[str, Any]) -> nn.Module:
    cls = hf_class(spec["architecture"])
    config = hf_config(spec)
    try:
        return cls._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    except ValueError:  # an architecture without SDPA support
        return cls._from_config(config, attn_implementation="eager", dtype=torch.float32)


def _gpt_config(spec: dict[str, Any]) -> GPTConfig:
    try:
        return GPTConfig(**spec["config"])
    except TypeError as exc:
        raise SpecError(f"model spec of kind 'gpt': {exc}") from exc


def build_model(spec: dict[str, Any], device: torch.device | str = "cpu", seed: int = 0,
                dtype: torch.dtype | None = None) -> nn.Module:
    """A freshly initialised model of ``spec``: the same seed gives the same parameters on every machine (they are
    drawn on the CPU in fp32, then moved and cast). ``forward(idx, targets=None)``: logits or the mean loss."""
    check_spec(spec)
    if spec["kind"] == "gpt":
        from demo_node.models.gpt import build

        model = build(_gpt_config(spec), "cpu", seed)
    else:
        from demo_node.models.causal_lm import CausalLM

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CausalLM(_hf_model(spec), spec)
    model.train()
    return model.to(device=device, dtype=dtype)


def spec_parameter_shapes(spec: dict[str, Any]) -> list[tuple[int, ...]]:
    """The parameter shapes of ``spec``'s model, in order, without allocating its weights."""
    check_spec(spec)
    if spec["kind"] == "gpt":
        from demo_node.models.gpt import parameter_shapes

        return parameter_shapes(_gpt_config(spec))
    with torch.device("meta"):
        model = _hf_model(spec)
    return [tuple(p.shape) for p in model.parameters()]


def spec_parameter_count(spec: dict[str, Any]) -> int:
    """Parameters of ``spec``'s model, without allocating its weights."""
    return sum(math.prod(shape) for shape in spec_parameter_shapes(spec))


def enable_grad_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in the backward pass instead of keeping them (the same loss and
    gradients, about a third more compute)."""
    from demo_node.models.causal_lm import CausalLM
    from demo_node.models.gpt import GPT

    if isinstance(model, CausalLM):
        hf, options = model.hf, {"use_reentrant": False}
        if hasattr(hf, "activation_checkpointing_enable"):  # its name from transformers 5 on
            hf.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    elif isinstance(model, GPT):
        model.grad_checkpointing = True
    else:
        raise TypeError(f"gradient checkpointing: {type(model).__name__} is not a model of build_model")
