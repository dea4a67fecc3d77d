"""The options of the ``demo-node join`` program beyond the swarm optimizer's: what it trains (model, data, seed),
the learning-rate schedule, its training loop and its console output (torch-free)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from demo_node import Reporter
from demo_node.data.limits import MAX_CORPUS_BYTES
from demo_node.models.presets import MODEL_CHOICES
from demo_node.options import LOCAL, TEST_ONLY, at_least, one_of, positive, within

SCHEDULES = ("constant", "cosine")
TOKENIZERS = ("auto", "bytes", "bpe", "file")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(kw_only=True)
class WorkloadConfig:
    SECTION = "run"

    model: str = field(default="tiny", metadata=one_of(MODEL_CHOICES))
    """What to train: a byte-level GPT preset (tiny: 137k parameters, for tests; bench: 10.9M; small; medium; large;
    1b), a Llama preset of Hugging Face transformers (llama-20m, llama-150m, llama-1b), or 'config' with
    --model-config: any causal-LM config.json (built from the config, nothing downloaded)."""
    model_config: str = field(default="", metadata=LOCAL)
    """With --model config: the Hugging Face config.json to build (its content defines the run; a joiner gives its
    own copy)."""
    context: int = field(default=0, metadata=within(0, 2**20 + 1))
    """Tokens per training sequence (0: the preset's: 64 for tiny, 128 for bench, 256 for llama-20m, ...)."""
    tokenizer: str = field(default="auto", metadata=one_of(TOKENIZERS))
    """bytes (one token per byte), bpe (a byte-level BPE trained on the run's corpus, the same on every node), file
    (--tokenizer-file) or auto (bytes for the GPT presets, bpe for the others)."""
    tokenizer_file: str = field(default="", metadata=LOCAL)
    """With --tokenizer file: a Hugging Face tokenizer.json (its hash is part of the run's identity)."""
    bpe_vocab: int = field(default=8192, metadata=within(260, 2**20 + 1))
    """Vocabulary size of the BPE trained on the run's corpus."""
    data: str = field(default="stdlib", metadata=LOCAL)
    """Training data: 'stdlib' (the Python standard library's sources, no download), a text file, a JSON-lines
    (.jsonl) or Parquet (.parquet) file, a folder of such files, or a folder of token shards from `demo-node data
    prepare`. Every 50th document is held out. The data's fingerprint, not its path, is part of the run's identity:
    a joiner gives its own copy."""
    data_field: str = field(default="text", metadata=LOCAL)
    """The field (JSON lines) or column (Parquet) that holds each document's text."""
    data_bytes: int = field(default=MAX_CORPUS_BYTES, metadata=within(1, 2**40 + 1))
    """Most bytes of text read from the corpus (the same cut on every node); token shards are read whole."""
    seed: int = field(default=0, metadata=within(0, 2**63))
    """Seed of the initial parameters (every node builds the same model from it)."""


@dataclass(kw_only=True)
class ScheduleConfig:
    SECTION = "schedule"

    lr_schedule: str = field(default="cosine", metadata=one_of(SCHEDULES))
    """Learning-rate schedule over the swarm's rounds: constant, or cosine after the warm-up."""
    warmup_rounds: int = field(default=20, metadata=at_least(0))
    """Rounds of linear warm-up."""
    total_rounds: int = field(default=2000, metadata=positive())
    """Rounds the cosine schedule spans (it then stays at 10% of the peak lr)."""

    def factor(self, round: int) -> float:
        """The share of the peak lr at a round: linear warm-up, then cosine down to 10% over total_rounds."""
        if self.warmup_rounds and round < self.warmup_rounds:
            return (round + 1) / self.warmup_rounds
        if self.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (round - self.warmup_rounds) / max(1, self.total_rounds - self.warmup_rounds))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(kw_only=True)
class TrainConfig:
    SECTION = "train"

    batch_size: int = field(default=8, metadata=positive())
    """Sequences per micro-batch."""
    micro_batches: int = field(default=1, metadata=positive())
    """Most micro-batches per round (their gradients are averaged)."""
    compute_seconds: float = field(default=0.0, metadata=at_least(0.0))
    """Time budget per round for micro-batches (0: exactly micro_batches)."""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto (CUDA with bf16 autocast when present)."""
    grad_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them: far less memory for a
    large model, about a third more compute (the same gradients)."""
    threads: int = field(default=0, metadata=at_least(0))
    """Torch CPU threads (0: torch's default)."""
    slowdown: float = field(default=1.0, metadata={**at_least(1.0), **TEST_ONLY})
    """Stretch compute time by this factor (for testing stragglers)."""
    fault_after_rounds: int = field(default=0, metadata={**at_least(0), **TEST_ONLY})
    """For testing the repair: after this many rounds as a member, nudge one parameter so this node's digest leaves
    the majority's (0: never)."""
    min_members: int = field(default=1, metadata=positive())
    """Train only once a round has this many members (until then, follow the rounds without computing): the first
    node of a run does not train alone while the others start."""
    max_rounds: int = field(default=0, metadata=at_least(0))
    """Leave after this many rounds of this process (0: run until stopped)."""
    eval_every: int = field(default=10, metadata=at_least(0))
    """Rounds between evaluations of the held-out loss (0: never)."""
    eval_windows: int = field(default=32, metadata=positive())
    """Held-out windows per evaluation (the same ones on every node, evenly spaced over the held-out text)."""


@dataclass(kw_only=True)
class LogConfig:
    SECTION = "log"

    log_format: str = field(default="auto", metadata=one_of(Reporter.FORMATS))
    """Console output: text (a live round line on a terminal), json (one JSON object per line), log (records of the
    demo_node.events logger, on stderr) or auto (text on a terminal, json otherwise)."""
    log_level: str = field(default="warning", metadata=one_of(LOG_LEVELS))
    """Level of library log lines (stderr)."""
