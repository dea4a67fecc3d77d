"""A node's checkpoint as a Hugging Face model folder (safetensors weights, config, generation config, tokenizer)
that ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load, and text sampled from it.

The checkpoint's run config names the model by its spec (section "model"); its "extra" may hold the run's
tokenizer as tokenizers JSON ("tokenizer_json"), else the model is byte-level. Our byte-level GPT becomes a
GPT2LMHeadModel, a transformers model stays what it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from demo_node.data.tokenizer import EOS, byte_tokenizer
from demo_node.models.from_checkpoint import NotACheckpoint, load_checkpoint, model_of
from demo_node.models.spec import DEFAULT_CONTEXT_CAP, positions_of


def to_hf(state: dict[str, Any]):
    """(transformers model, PreTrainedTokenizerFast) of a loaded checkpoint."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    model = model_of(state)
    spec = state["spec"]
    if spec["kind"] == "gpt":
        from demo_node.models.to_gpt2 import to_gpt2

        hf, context = to_gpt2(model), spec["config"]["context"]
    else:
        hf, context = model.hf, positions_of(model.hf.config.get_text_config()) or DEFAULT_CONTEXT_CAP
    extra = state.get("extra") if isinstance(state.get("extra"), dict) else {}
    tok = Tokenizer.from_str(extra.get("tokenizer_json") or byte_tokenizer().to_json())
    vocab = hf.get_output_embeddings().weight.shape[0]
    if tok.get_vocab_size() > vocab:
        raise NotACheckpoint(f"{state.get('path', 'the checkpoint')}: its tokenizer has {tok.get_vocab_size()} "
                             f"tokens, more than the model's {vocab}")
    hf.config.dtype = next(hf.parameters()).dtype  # from_pretrained then loads the weights as they are
    eos = EOS if tok.token_to_id(EOS) is not None else None
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, model_max_length=context)
    if eos is not None:
        # generation stops there; the model config's pad_token_id stays: it would freeze that embedding's row in
        # a later fine-tuning
        hf.config.eos_token_id = hf.generation_config.eos_token_id = tok.token_to_id(eos)
        hf.generation_config.pad_token_id = tok.token_to_id(eos)
    return hf.eval(), tokenizer


@dataclass
class Exported:
    folder: Path
    source: str
    """The checkpoint file it was made from."""
    passed_over: list[str]
    """Why newer checkpoints of the folder were not used (torn or corrupt files)."""


def export(checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike) -> Exported:
    """Write the model and tokenizer of a checkpoint (a ckpt-*.pt file, or a checkpoint folder's newest good one)
    as a Hugging Face folder."""
    state = load_checkpoint(checkpoint_path)
    hf, tokenizer = to_hf(state)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)  # safetensors weights, config.json, generation_config.json
    tokenizer.save_pretrained(out)
    # safetensors writes its file readable by its owner only; the folder is meant to be shared like the rest
    umask = os.umask(0)
    os.umask(umask)
    for f in out.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)
    return Exported(out, str(state.get("path", checkpoint_path)), list(state.get("passed_over", [])))


def generate(checkpoint_path: str | os.PathLike, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
             top_k: int = 50, seed: int = 0) -> str:
    """The prompt and the text the checkpoint's model samples after it (temperature 0: greedy); an empty prompt
    starts from the end-of-text token, or a newline."""
    hf, tokenizer = to_hf(load_checkpoint(checkpoint_path))
    if prompt:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    else:
        start = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else tokenizer.encode("\n")
        ids = torch.tensor([start])
    limit = tokenizer.model_max_length
    new = max(1, min(max_new_tokens, limit - 1))
    ids = ids[:, -(limit - new):]  # positions past the model's were never trained: keep the prompt's end
    options = {"do_sample": True, "temperature": temperature, "top_k": top_k} if temperature > 0 else {"do_sample": False}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                          pad_token_id=hf.generation_config.pad_token_id or 0, **options)
    # decoding prompt and continuation together keeps a character whose bytes straddle them in one piece
    return tokenizer.decode(out[0] if prompt else out[0, ids.shape[1]:], skip_special_tokens=True)
