"""The config of ``demo-node join``, one loader: command-line flags over ``DEMO_NODE_*`` environment over a TOML file
over defaults.

Every option is a field of one typed config class (:data:`CLASSES`) and has one name, used as is in TOML (under the
class's section), upper-cased with the prefix in the environment (``lr`` -> ``DEMO_NODE_LR``) and as a flag
(``--lr``); its docstring is its ``--help`` line. Unknown TOML keys and unknown ``DEMO_NODE_*`` variables are errors
that name themselves. The options of the ``run``, ``optimizer``, ``defense`` and ``schedule`` sections define the training run:
their hash is part of the run's identity (see :mod:`demo_node.run_identity`); the others are this node's own.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from demo_node import DeMoConfig, DefenseConfig, NetworkConfig, RoundConfig, RunName, ServiceConfig, SwarmConfig
from demo_node.daemon.config import LogConfig, ScheduleConfig, TrainConfig, WorkloadConfig
from demo_node.errors import DemoNodeError
from demo_node.options import OptionError, OptionField, as_dict, coerce, fields_of, help_text

ENV_PREFIX = "DEMO_NODE_"
RUN_SECTIONS = ("run", "optimizer", "defense", "schedule")
NOT_HASHED = ("run_id",)
"""Run-section options that name the run rather than define it."""

SWARM_CLASSES: dict[str, type] = {f.name: f.default_factory for f in fields(SwarmConfig)}
"""The swarm optimizer's components (SwarmConfig attribute -> its class), as the public API defines them."""
PROGRAM_CLASSES: dict[str, type] = {
    "workload": WorkloadConfig, "schedule": ScheduleConfig, "train": TrainConfig, "log": LogConfig}
"""This program's own components."""
CLASSES: dict[str, type] = {**SWARM_CLASSES, **PROGRAM_CLASSES}
"""Config attribute -> the class it holds."""
PROGRAM_DEFAULTS: dict[str, Any] = {
    "control": "127.0.0.1:7070",  # a daemon answers `demo-node status` and the Docker healthcheck out of the box
}
"""Where this program's default differs from the component's (the Python API keeps the component's)."""
HELP_ORDER = ("run", "workload", "optimizer", "schedule", "train", "defense", "round", "network", "service", "log")
"""--help's groups: what is trained and how first, the swarm's knobs after."""

FIELDS: dict[str, OptionField] = {}
for _attr in HELP_ORDER:
    _cls = CLASSES[_attr]
    for _f in fields_of(_cls):
        assert _f.name not in FIELDS, f"option {_f.name} is defined twice"
        FIELDS[_f.name] = _f
SECTIONS = tuple(dict.fromkeys(f.section for f in FIELDS.values()))


class ConfigError(DemoNodeError, ValueError):
    """A bad option value, an unknown key, or an unreadable config file: the message names the culprit."""


def default(name: str) -> Any:
    return PROGRAM_DEFAULTS.get(name, FIELDS[name].default)


@dataclass
class Config:
    """The whole config of a node, one typed object per component."""

    run: RunName
    workload: WorkloadConfig
    optimizer: DeMoConfig
    defense: DefenseConfig
    schedule: ScheduleConfig
    train: TrainConfig
    round: RoundConfig
    network: NetworkConfig
    service: ServiceConfig
    log: LogConfig
    explicit: dict[str, str] = field(default_factory=dict)
    """Option -> where its value came from, for options not left at their default."""

    def values(self) -> dict[str, Any]:
        return {k: v for attr in CLASSES for k, v in as_dict(getattr(self, attr)).items()}

    def run_config(self) -> dict[str, dict[str, Any]]:
        """The options that define the run, by section (what a joiner must match or adopt)."""
        out: dict[str, dict[str, Any]] = {s: {} for s in RUN_SECTIONS}
        for name, value in self.values().items():
            f = FIELDS[name]
            if f.section in RUN_SECTIONS and name not in NOT_HASHED and not f.local:
                out[f.section][name] = value
        return out

    def run_explicit(self) -> bool:
        """Whether any option that defines the run was set by the user (else the run's config is adopted)."""
        return any(FIELDS[n].section in RUN_SECTIONS and n not in ("run_name",) + NOT_HASHED and not FIELDS[n].local
                   for n in self.explicit)

    def with_run_config(self, run: Mapping[str, Mapping[str, Any]]) -> "Config":
        """This config with the run-defining options of an announced run."""
        values = self.values()
        for section, items in run.items():
            if section not in RUN_SECTIONS:
                continue  # sections the swarm optimizer adds (the parameters' shapes) are checked there
            for k, v in items.items():
                f = FIELDS.get(k)
                if f is None or f.section != section or k in NOT_HASHED:
                    raise ConfigError(f"the run's config has an unknown key {section}.{k}")
                if not f.local:  # a path on the founder's machine is never taken: the joiner gives its own
                    values[k] = v
        return _build(values, {k: "the run's config" for k in values}, dict(self.explicit))

    def swarm(self) -> SwarmConfig:
        """The swarm optimizer's share of this config (the same objects, not copies)."""
        return SwarmConfig(**{name: getattr(self, name) for name in SWARM_CLASSES})


def _build(values: dict[str, Any], origins: dict[str, str], explicit: dict[str, str]) -> Config:
    parts = {}
    for attr, cls in CLASSES.items():
        kwargs = {}
        for f in fields_of(cls):
            try:
                kwargs[f.name] = coerce(f, values[f.name], origins.get(f.name, ""))
            except OptionError as exc:
                raise ConfigError(str(exc)) from None
        parts[attr] = cls(**kwargs)
    return Config(**parts, explicit=explicit)


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
            f = FIELDS.get(key)
            if f is None or f.section != section:
                raise ConfigError(f"config file {path}: unknown key {section}.{key}")
            out[key] = value
    return out


def read_env(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        name = var[len(ENV_PREFIX):].lower()
        if name not in FIELDS:
            raise ConfigError(f"unknown environment variable {var}")
        out[name] = value
    return out


def add_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per option (default None, so that unset flags fall through to env, file and defaults), grouped by
    section, with the field's docstring as help."""
    parser.add_argument("--config", metavar="FILE", help=f"TOML config file (or ${ENV_PREFIX}CONFIG)")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in FIELDS.values():
        group = groups.get(f.section) or groups.setdefault(f.section, parser.add_argument_group(f"[{f.section}]"))
        text = argparse.SUPPRESS if f.hidden else \
            help_text(f).replace(f"(default: {f.default})", f"(default: {default(f.name)})")
        if f.kind is bool:
            group.add_argument(f.flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=text)
        elif f.kind is list:
            group.add_argument(f.flag, dest=f.name, default=None, nargs="*", metavar="ADDR", help=text)
        else:
            group.add_argument(f.flag, dest=f.name, default=None, choices=f.choices, help=text)


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: str | None = None) -> Config:
    """Merge defaults, the TOML file, the environment and flags, in rising priority."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None and k in FIELDS}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    values = {name: default(name) for name in FIELDS}
    origins: dict[str, str] = {}
    layers = []
    if path:
        layers.append((read_toml(path), f"file {path}"))
    layers.append((read_env(env), "environment"))
    layers.append((flags, "flags"))
    for layer, origin in layers:
        for name, value in layer.items():
            values[name] = value
            origins[name] = f"{ENV_PREFIX}{name.upper()}" if origin == "environment" else origin
    explicit = {name: ("environment" if o.startswith(ENV_PREFIX) else o) for name, o in origins.items()}
    return _build(values, origins, explicit)
