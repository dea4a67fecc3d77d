"""One config tree, one loader: command-line flags over ``DEMO_NODE_*`` environment over a TOML file over defaults.

Every option has one name, used as is in TOML (under its section), upper-cased with the prefix in the environment
(``lr`` -> ``DEMO_NODE_LR``), and as a flag (``--lr``). Unknown TOML keys and unknown ``DEMO_NODE_*`` variables are
errors that name themselves. Options of the ``run``, ``optimizer`` and ``schedule`` sections define the training run:
their hash is part of the run's identity (see :mod:`demo_node.run_identity`); the others are this node's own.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

ENV_PREFIX = "DEMO_NODE_"
RUN_SECTIONS = ("run", "optimizer", "schedule")


class ConfigError(ValueError):
    """A bad option value, an unknown key, or an unreadable config file: the message names the culprit."""


@dataclass(frozen=True)
class Option:
    name: str
    section: str
    default: Any
    help: str
    kind: type = str
    choices: tuple | None = None
    check: Callable[[Any], bool] | None = None
    """Extra validity test; failing it is a ConfigError naming the option."""


def _positive(x) -> bool:
    return x > 0


def _non_negative(x) -> bool:
    return x >= 0


OPTIONS: tuple[Option, ...] = (
    # the run: shared by every node, hashed into the run id
    Option("run_name", "run", "demo", "name of the training run (the run id adds the config hash)"),
    Option("model", "run", "tiny", "GPT preset: tiny, bench, small, medium, large, 1b"),
    Option("data", "run", "stdlib", "training text: 'stdlib' (the Python standard library's sources) or a path"),
    Option("seed", "run", 0, "seed of the initial parameters", int),
    Option("lr", "optimizer", 3e-3, "peak learning rate (the sign step's size)", float, check=_non_negative),
    Option("beta", "optimizer", 0.999, "DeMo momentum decay", float),
    Option("topk", "optimizer", 32, "coefficients kept per DCT block", int, check=_positive),
    Option("chunk", "optimizer", 64, "DCT chunk per dimension", int, check=_positive),
    Option("weight_decay", "optimizer", 0.0, "decoupled weight decay", float, check=_non_negative),
    Option("momentum", "optimizer", "reference", "momentum form", choices=("reference", "ema")),
    Option("residual_alpha", "optimizer", 1.0, "fraction of sent components removed from the momentum", float),
    Option("values", "optimizer", "int8", "precision of sent values", choices=("fp32", "fp16", "bf16", "int8", "sign")),
    Option("aggregation", "optimizer", "selected", "aggregation rule", choices=("selected", "all")),
    Option("lr_schedule", "schedule", "cosine", "learning-rate schedule over rounds", choices=("constant", "cosine")),
    Option("warmup_rounds", "schedule", 20, "linear warm-up rounds", int, check=_non_negative),
    Option("total_rounds", "schedule", 2000, "rounds the cosine schedule spans (it then stays at 10% of lr)", int,
           check=_positive),
    # this node's training
    Option("batch_size", "train", 8, "sequences per micro-batch", int, check=_positive),
    Option("micro_batches", "train", 1, "most micro-batches per round", int, check=_positive),
    Option("compute_seconds", "train", 0.0, "time budget per round for micro-batches (0: exactly micro_batches)",
           float, check=_non_negative),
    Option("device", "train", "auto", "cpu, cuda, cuda:N or auto (CUDA with bf16 autocast when present)"),
    Option("threads", "train", 0, "torch CPU threads (0: torch's default)", int, check=_non_negative),
    Option("slowdown", "train", 1.0, "stretch compute time by this factor (testing stragglers)", float,
           check=lambda x: x >= 1.0),
    Option("fault_after_rounds", "train", 0, "testing the repair: after this many rounds as a member, nudge one "
           "parameter so this node's digest leaves the majority's (0: never)", int, check=_non_negative),
    Option("max_rounds", "train", 0, "stop after this many rounds of this process (0: run until stopped)", int,
           check=_non_negative),
    Option("eval_every", "train", 10, "rounds between evaluations of the held-out loss (0: never)", int,
           check=_non_negative),
    # the rounds, as this node runs them
    Option("deadline", "round", 10.0, "seconds an owner waits for contributions after the round's first one", float,
           check=_positive),
    Option("adaptive_deadline", "round", False, "shrink the deadline towards 3x the recent arrival spread", bool),
    Option("exchange", "round", "auto", "how owners return a shard's update", choices=("auto", "relay", "sign")),
    Option("overlap", "round", False, "compute the next round while this round's exchange is in flight", bool),
    # the network
    Option("peers", "node", [], "multiaddrs of peers to join (none: start a new swarm)", list),
    Option("run_id", "node", "", "the run to join, as name-hash (default: the run named run_name)"),
    Option("listen", "node", ["/ip4/0.0.0.0/tcp/0"], "multiaddrs to listen on", list),
    Option("announce", "node", [], "multiaddrs to announce to peers (default: what libp2p sees)", list),
    Option("identity", "node", "", "private key file: the peer id survives restarts (created if missing)"),
    Option("client_mode", "node", False, "this node cannot accept connections: it dials out only", bool),
    Option("checkpoint_dir", "node", "", "where checkpoints go (empty: none)"),
    Option("checkpoint_every", "node", 10, "rounds between checkpoints", int, check=_positive),
    Option("log_format", "node", "auto", "console output", choices=("auto", "text", "json")),
    Option("log_level", "node", "warning", "level of library log lines (stderr)",
           choices=("debug", "info", "warning", "error")),
    Option("metrics", "node", "", "host:port of the Prometheus /metrics endpoint (port 0: any; empty: off)"),
    Option("control", "node", "127.0.0.1:7070", "host:port of the local gRPC control API (port 0: any; empty: off)"),
)
BY_NAME = {o.name: o for o in OPTIONS}
SECTIONS = tuple(dict.fromkeys(o.section for o in OPTIONS))


def _convert(opt: Option, value: Any, origin: str) -> Any:
    """Coerce a value from TOML, environment or flags to the option's type, and check it."""
    try:
        if opt.kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = low in ("1", "true", "yes", "on")
            elif not isinstance(value, bool):
                raise ValueError(value)
        elif opt.kind is list:
            if isinstance(value, str):
                value = [v for v in (s.strip() for s in value.split(",")) if v]
            elif not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            value = list(value)
        elif opt.kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            value = int(value)
        elif opt.kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
        else:
            if not isinstance(value, str):
                raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{opt.name} (from {origin}): {value!r} is not a valid {opt.kind.__name__}") from None
    if opt.choices is not None and value not in opt.choices:
        raise ConfigError(f"{opt.name} (from {origin}): {value!r} is not one of {', '.join(opt.choices)}")
    if opt.check is not None and not opt.check(value):
        raise ConfigError(f"{opt.name} (from {origin}): {value!r} is out of range")
    return value


@dataclass
class Config:
    settings: dict[str, Any]
    """Option name -> value (read them as attributes: ``cfg.lr``)."""
    explicit: dict[str, str] = field(default_factory=dict)
    """Option -> where its value came from, for options not left at their default."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self.settings[name]
        except KeyError:
            raise AttributeError(name) from None

    def section(self, name: str) -> dict[str, Any]:
        return {o.name: self.settings[o.name] for o in OPTIONS if o.section == name}

    def run_config(self) -> dict[str, dict[str, Any]]:
        """The options that define the run, by section."""
        return {s: self.section(s) for s in RUN_SECTIONS}

    def run_explicit(self) -> bool:
        """Whether any option that defines the run was set by the user (else the run's config is adopted)."""
        return any(BY_NAME[n].section in RUN_SECTIONS and n != "run_name" for n in self.explicit)

    def with_run_config(self, run: Mapping[str, Mapping[str, Any]]) -> "Config":
        values = dict(self.settings)
        for section, items in run.items():
            for k, v in items.items():
                if k not in BY_NAME or BY_NAME[k].section != section:
                    raise ConfigError(f"the run's config has an unknown key {section}.{k}")
                values[k] = _convert(BY_NAME[k], v, "the run's config")
        return Config(values, dict(self.explicit))


def read_toml(path: str) -> dict[str, Any]:
    """Options from a TOML file: ``[section]`` tables holding that section's options."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    out = {}
    for section, table in data.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise ConfigError(f"config file {path}: unknown section [{section}] (sections: {', '.join(SECTIONS)})")
        for key, value in table.items():
            opt = BY_NAME.get(key)
            if opt is None or opt.section != section:
                raise ConfigError(f"config file {path}: unknown key {section}.{key}")
            out[key] = value
    return out


def read_env(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        name = var[len(ENV_PREFIX):].lower()
        if name not in BY_NAME:
            raise ConfigError(f"unknown environment variable {var}")
        out[name] = value
    return out


def add_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...] = SECTIONS) -> None:
    """A flag per option (default None, so that unset flags fall through to env, file and defaults)."""
    parser.add_argument("--config", metavar="FILE", help=f"TOML config file (or ${ENV_PREFIX}CONFIG)")
    for section in sections:
        group = parser.add_argument_group(section)
        for o in (o for o in OPTIONS if o.section == section):
            flag = "--" + o.name.replace("_", "-")
            if o.kind is bool:
                group.add_argument(flag, dest=o.name, default=None, action=argparse.BooleanOptionalAction, help=o.help)
            elif o.kind is list:
                group.add_argument(flag, dest=o.name, default=None, nargs="*", metavar="ADDR", help=o.help)
            else:
                group.add_argument(flag, dest=o.name, default=None, help=f"{o.help} (default: {o.default})")


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: str | None = None) -> Config:
    """Merge defaults, the TOML file, the environment and flags, in rising priority."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None and k in BY_NAME}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    values = {o.name: o.default for o in OPTIONS}
    explicit: dict[str, str] = {}
    layers = []
    if path:
        layers.append((read_toml(path), f"file {path}"))
    layers.append((read_env(env), "environment"))
    layers.append((flags, "flags"))
    for layer, origin in layers:
        for name, value in layer.items():
            values[name] = _convert(BY_NAME[name], value, origin if origin != "environment"
                                    else f"{ENV_PREFIX}{name.upper()}")
            explicit[name] = origin
    return Config(values, explicit)
