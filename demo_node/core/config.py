"""DeMo's hyperparameters and the choice lists they draw from (defined here once; torch-free, so the command line
can build its flags from them without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from demo_node.options import at_least, one_of, positive, validate, within

MOMENTUM_FORMS = ("reference", "ema")
"""reference: m = beta*m + lr*g (the reference code); ema: m = beta*m + (1-beta)*g (the paper's v2)."""
VALUE_MODES = ("fp32", "fp16", "bf16", "int8", "sign")
"""fp32: exact. fp16 / bf16: 16-bit floats (fp16 flushes magnitudes below about 6e-8 to zero, bf16 keeps fp32's
range with 8 bits of mantissa). int8: symmetric codes in [-127, 127] times a per-block fp32 scale (block max / 127).
sign: one bit per value times a per-block fp32 scale (mean magnitude of the block's kept values), as Psyche sends."""
AGGREGATIONS = ("selected", "all")
"""selected: per coefficient, the sample-weighted mean over the peers that selected it (the reference's rule);
all: the sample-weighted mean over all peers, a peer that did not select a coefficient counting as zero."""


@dataclass(kw_only=True)
class DeMoConfig:
    """DeMo's hyperparameters; the defaults are the reference's, apart from ``lr`` and ``values`` (see below)."""

    SECTION = "optimizer"

    # 3e-3: a sign step wants an lr like sign-SGD's, and on the tiny preset the held-out loss was best at 3e-3 of
    # {1e-3, 3e-3, 1e-2} at 2 nodes, and of {2e-3, 3e-3, 4e-3} at 8 nodes with a 40-round warm-up
    # (docs/convergence.md; the 3.3M "mini" preferred 1e-3 of {1e-3, 3e-3}).
    lr: float = field(default=3e-3, metadata=at_least(0.0))
    """Learning rate: the size of each sign step."""
    beta: float = field(default=0.999, metadata=within(0.0, 1.0))
    """Momentum decay (the reference's compression_decay)."""
    topk: int = field(default=32, metadata=positive())
    """Coefficients kept per DCT block (clamped to the block size)."""
    cut_topk: int = field(default=0, metadata=at_least(0))
    """Coefficients per block that a shard's owner keeps of the aggregate in sparse exchange (0: topk). More keep
    sparse exchange's update closer to sign exchange's late in a run, at about 10 bits each on the way back."""
    chunk: int = field(default=64, metadata=positive())
    """Target DCT chunk per dimension: blocks are up to chunk x chunk."""
    weight_decay: float = field(default=0.0, metadata=at_least(0.0))
    """Decoupled weight decay: p *= 1 - lr * weight_decay every step."""
    momentum: str = field(default="reference", metadata=one_of(MOMENTUM_FORMS))
    """Momentum form: reference (m = beta*m + lr*g) or ema (m = beta*m + (1-beta)*g, the paper's v2)."""
    residual_alpha: float = field(default=1.0, metadata=within(0.0, 1.0, low_open=True))
    """Fraction of the transmitted components removed from the momentum (1.0 reference; the paper's v2 found 0.2
    best)."""
    values: str = field(default="int8", metadata=one_of(VALUE_MODES))
    """Precision of transmitted values. int8 (per-block scale) is the default because it keeps the payload under a
    quarter of the reference's at the same loss; fp32 reproduces the reference's update bit for bit; sign (one bit
    and a block scale, 0.6x int8's bytes) cost about 2% of held-out loss in the runs of docs/scale-model.md."""
    aggregation: str = field(default="selected", metadata=one_of(AGGREGATIONS))
    """Aggregation rule: selected (per coefficient, the sample-weighted mean over the peers that selected it, the
    reference's rule) or all (the sample-weighted mean over all peers)."""

    def validate(self) -> "DeMoConfig":
        return validate(self)
