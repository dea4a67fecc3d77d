"""What a run trains, resolved from its options on this machine: the tokenizer, the corpus as tokens, the model's
spec and the sequence length; and the sections of the run's definition they make (hashed into the run id, checked
against every peer's), none of which holds a local path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from demo_node.daemon.config import WorkloadConfig
from demo_node.data.sources import source_format
from demo_node.data.tokenizer import Tokenizer, byte_tokenizer, load_tokenizer, train_bpe
from demo_node.data.tokens import TokenCorpus, documents_for_tokenizer, open_corpus
from demo_node.errors import DemoNodeError
from demo_node.models.presets import PRESETS
from demo_node.models.spec import default_context, model_spec

BPE_TRAINING_BYTES = 8 * 2**20
"""Text a BPE is trained on (the start of the corpus's training split): enough for a vocabulary of some thousands,
and a few seconds on one core, so that every node can train the same one at start."""


class WorkloadError(DemoNodeError, ValueError):
    """Options that do not make a workload (the message names the option)."""


@dataclass
class Workload:
    tokenizer: Tokenizer
    spec: dict[str, Any]
    """The model's architecture (see :mod:`demo_node.models.spec`)."""
    context: int
    corpus: TokenCorpus | None = None
    """Read by :meth:`load_data`, once the node knows the model fits (a large corpus takes memory too)."""

    def load_data(self, cfg: WorkloadConfig) -> TokenCorpus:
        self.corpus = open_corpus(cfg.data, self.tokenizer, max_bytes=cfg.data_bytes, field=cfg.data_field)
        return self.corpus

    def run_sections(self) -> dict[str, dict[str, Any]]:
        """The run's definition beyond the options: the model, the data and the tokenizer, by content."""
        assert self.corpus is not None, "load_data() first"
        tok = self.tokenizer
        # the format is left out: a corpus and its prepared token shards are the same data
        data = {k: v for k, v in self.corpus.spec.items() if k != "format"}
        return {"model": dict(self.spec), "data": data,
                "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "sha256": tok.sha256}}

    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint carries so that `demo-node export` can rebuild the model with its tokenizer."""
        return {"tokenizer_json": None if self.tokenizer.kind == "bytes" else self.tokenizer.to_json()}


def tokenizer_kind(cfg: WorkloadConfig) -> str:
    if cfg.tokenizer != "auto":
        return cfg.tokenizer
    return "bytes" if cfg.model in PRESETS else "bpe"


def make_tokenizer(cfg: WorkloadConfig) -> Tokenizer:
    """The run's tokenizer: bytes, a file's, or a BPE trained on the start of the corpus (the same on every node
    that has the same corpus)."""
    kind = tokenizer_kind(cfg)
    if cfg.model in PRESETS and kind != "bytes":
        raise WorkloadError(f"tokenizer: the GPT preset {cfg.model!r} is byte-level; use --tokenizer bytes (or a "
                            f"Llama preset or --model config for a {kind} tokenizer)")
    if kind == "bytes":
        return byte_tokenizer()
    if kind == "file":
        if not cfg.tokenizer_file:
            raise WorkloadError("tokenizer_file: --tokenizer file needs --tokenizer-file PATH (a tokenizer.json)")
        return load_tokenizer(cfg.tokenizer_file)
    if source_format(cfg.data) == "tokens":
        return load_tokenizer(cfg.data)  # the tokenizer `demo-node data prepare` wrote beside the shards
    docs = documents_for_tokenizer(cfg.data, min(cfg.data_bytes, BPE_TRAINING_BYTES), field=cfg.data_field)
    return train_bpe(docs, cfg.bpe_vocab)


def resolve(cfg: WorkloadConfig, tokenizer_json: str | None = None) -> Workload:
    """The tokenizer, model spec and sequence length of these options (the corpus comes later, see
    :meth:`Workload.load_data`); ``tokenizer_json``: a tokenizer another rank of this node already made."""
    if cfg.model == "config" and not cfg.model_config:
        raise WorkloadError("model_config: --model config needs --model-config PATH (a Hugging Face config.json)")
    # a file given for nothing would be ignored in silence (a joiner that adopted a preset run, say)
    if cfg.model_config and cfg.model != "config":
        raise WorkloadError(f"model_config: {cfg.model_config} is given but the model is {cfg.model!r}; use it with "
                            "--model config")
    if cfg.tokenizer_file and tokenizer_kind(cfg) != "file":
        raise WorkloadError(f"tokenizer_file: {cfg.tokenizer_file} is given but the tokenizer is "
                            f"{tokenizer_kind(cfg)!r}; use it with --tokenizer file")
    tokenizer = Tokenizer.from_json(tokenizer_json) if tokenizer_json is not None else make_tokenizer(cfg)
    spec = model_spec(cfg.model, cfg.model_config or None, tokenizer.vocab_size, cfg.context)
    return Workload(tokenizer, spec, cfg.context or default_context(spec))
