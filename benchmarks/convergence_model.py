"""What every process of ``python -m benchmarks convergence`` trains, and on which device: a GPT preset or a Llama
preset over the byte tokenizer of the embedded corpus, built from one spec and one seed, so that every method and every
worker starts from the same parameters. torch is imported where a model is made, so that the command line can read
``MODELS`` quickly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from demo_node.models.presets import LLAMA_PRESETS, PRESETS

if TYPE_CHECKING:
    import torch
    from torch import nn

BYTE_VOCAB = 256
"""The embedded corpus is read byte by byte: a Llama preset gets this vocabulary instead of its own."""
MODELS = (*(m for m in PRESETS if m != "1b"), *LLAMA_PRESETS)
"""What ``--model`` accepts: the GPT presets up to ``large`` and the Llama presets (the larger ones for a GPU)."""


def spec_of(model: str) -> dict:
    """The node's own spec of ``model`` over the corpus's bytes, at the preset's own sequence length."""
    from demo_node.models.spec import model_spec

    return model_spec(model, None, BYTE_VOCAB, 0)


def context_of(model: str) -> int:
    """The sequence length every method trains and evaluates at: the preset's own."""
    from demo_node.models.spec import default_context

    return default_context(spec_of(model))


def parameter_count(model: str) -> int:
    """Parameters of ``model``, counted without allocating its weights."""
    from demo_node.models.spec import spec_parameter_count

    return spec_parameter_count(spec_of(model))


def make(model: str, seed: int, device: str = "cpu") -> nn.Module:
    """A freshly initialised ``model`` on ``device``: drawn on the CPU in fp32 from ``seed`` (the same parameters in
    every process and on every device), ``forward(x, y)`` the mean cross-entropy."""
    from demo_node.models.spec import build_model

    return build_model(spec_of(model), device, seed)


def check_device(device: str) -> str:
    """``device`` if torch can use it here; a clear error naming ``--device`` otherwise."""
    import torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"--device {device!r} is not usable here: {str(exc).splitlines()[0]}") from None
    return device


def on(device: str, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The data streams and the held-out set are drawn on the CPU (the same windows everywhere): moved here."""
    return tuple(t.to(device) for t in tensors)
