"""The options of a swarm optimizer, grouped by the component that reads them (torch-free).

:class:`SwarmConfig` holds one typed config per component; a keyword argument of ``SwarmOptimizer`` goes to the one
component that has a field of that name, so every option has exactly one home, one doc and one default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demo_node.core.config import DeMoConfig
from demo_node.net.config import NetworkConfig
from demo_node.options import LOCAL, OptionError, build, fields_of, positive
from demo_node.swarm.config import DefenseConfig, RoundConfig


@dataclass(kw_only=True)
class RunName:
    SECTION = "run"

    run_name: str = "demo"
    """Name of the training run (its id adds a hash of the config that defines it)."""
    run_id: str = ""
    """The run to join, as name-hash (default: the run named run_name, or a new one)."""


@dataclass(kw_only=True)
class ServiceConfig:
    SECTION = "service"

    checkpoint_dir: str = field(default="", metadata=LOCAL)
    """Where checkpoints go (empty: none). On start the newest good one there is resumed from."""
    checkpoint_every: int = field(default=10, metadata=positive())
    """Rounds between checkpoints."""
    keep_checkpoints: int = field(default=3, metadata=positive())
    """Checkpoints kept: the newest this many, plus the newest taken while this node's digest agreed with the
    swarm's."""
    metrics: str = ""
    """host:port of the Prometheus /metrics endpoint (port 0: any free one; empty: off)."""
    control: str = ""
    """host:port of the local gRPC control API and health service (port 0: any free one; empty: off)."""


COMPONENTS: dict[str, type] = {
    "run": RunName,
    "optimizer": DeMoConfig,
    "defense": DefenseConfig,
    "round": RoundConfig,
    "network": NetworkConfig,
    "service": ServiceConfig,
}
"""SwarmConfig attribute -> the config class it holds."""


@dataclass(kw_only=True)
class SwarmConfig:
    """Everything a swarm optimizer is configured with, one typed config per component."""

    run: RunName = field(default_factory=RunName)
    optimizer: DeMoConfig = field(default_factory=DeMoConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    round: RoundConfig = field(default_factory=RoundConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)

    @classmethod
    def from_options(cls, base: "SwarmConfig | None" = None, **options: Any) -> "SwarmConfig":
        """``base`` (or the defaults) with ``options`` set, each in the component that has a field of its name."""
        base = base or cls()
        given: dict[str, dict[str, Any]] = {name: {} for name in COMPONENTS}
        owner = {f.name: comp for comp, klass in COMPONENTS.items() for f in fields_of(klass)}
        for name, value in options.items():
            if name not in owner:
                raise TypeError(f"unknown option {name!r} (options: {', '.join(sorted(owner))})")
            given[owner[name]][name] = value
        parts = {}
        for comp, klass in COMPONENTS.items():
            current = getattr(base, comp)
            values = {f.name: getattr(current, f.name) for f in fields_of(klass)}
            values.update(given[comp])
            parts[comp] = build(klass, values)
        return cls(**parts)

    def validate(self) -> "SwarmConfig":
        for comp, klass in COMPONENTS.items():
            part = getattr(self, comp)
            if not isinstance(part, klass):
                raise OptionError(comp, f"expected a {klass.__name__}, got {type(part).__name__}")
            build(klass, {f.name: getattr(part, f.name) for f in fields_of(klass)})
        return self
