"""Options from typed config dataclasses: one field gives one flag, one ``DEMO_NODE_*`` variable, one TOML key and
one line of ``--help``.

A config class is a ``@dataclass(kw_only=True)`` with a ``SECTION`` (its TOML table). Each field has a type (bool,
int, float, str or list[str]), a default, an optional check in its metadata (:func:`at_least`, :func:`one_of`, ...)
and a docstring under it, read from the source as tyro and torchtitan do, so the docs a developer reads are the help
a user reads. Nothing here imports torch: the command line stays quick.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable, Iterable

from demo_node.errors import DemoNodeError

KINDS = (bool, int, float, str, list)


class OptionError(DemoNodeError, ValueError):
    """A bad option value; ``name`` is the option's name and the message starts with it."""

    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__(f"{name}: {message}")


# -- checks, declared in a field's metadata ------------------------------------------------------------------------
def check(predicate: Callable[[Any], bool], requirement: str) -> dict:
    """Field metadata: the value must satisfy ``predicate`` (``requirement`` says how, in the error)."""
    return {"check": (predicate, requirement)}


def at_least(low: float) -> dict:
    return check(lambda v: v >= low, f"at least {low}")


def positive() -> dict:
    return check(lambda v: v > 0, "above 0")


def within(low: float, high: float, *, low_open: bool = False) -> dict:
    if low_open:
        return check(lambda v: low < v <= high, f"in ({low}, {high}]")
    return check(lambda v: low <= v < high, f"in [{low}, {high})")


def one_of(choices: Iterable[str]) -> dict:
    """Field metadata: the value is one of ``choices`` (the list lives once, where the choice is implemented)."""
    return {"choices": tuple(choices)}


LOCAL = {"local": True}
"""Field metadata: the value names something on this machine (a file, a folder, a device): never taken from a peer."""
TEST_ONLY = {"hidden": True}
"""Field metadata: a knob for the project's own tests (a fault to inject): it works, but --help does not show it."""


# -- reading a config class --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptionField:
    name: str
    section: str
    kind: type
    default: Any
    doc: str
    choices: tuple[str, ...] | None
    check: tuple[Callable[[Any], bool], str] | None
    owner: type
    local: bool = False
    """It names something on this machine: a node never adopts it from a peer."""
    hidden: bool = False
    """A knob for tests: not in --help."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "DEMO_NODE_" + self.name.upper()


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of a class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for stmt, nxt in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def _kind(hint: Any) -> type:
    origin = typing.get_origin(hint) or hint
    if origin not in KINDS:
        raise TypeError(f"option type {hint!r} is not one of bool, int, float, str, list[str]")
    return origin


@cache
def fields_of(cls: type) -> tuple[OptionField, ...]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(OptionField(f.name, cls.SECTION, _kind(hints[f.name]), default, docs.get(f.name, ""),
                               f.metadata.get("choices"), f.metadata.get("check"), cls, bool(f.metadata.get("local")),
                               bool(f.metadata.get("hidden"))))
    return tuple(out)


# -- values -------------------------------------------------------------------------------------------------------
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def coerce(f: OptionField, value: Any, origin: str = "") -> Any:
    """A value from TOML, the environment, a flag or a keyword argument, as the field's type, checked."""
    where = f" (from {origin})" if origin else ""
    try:
        if f.kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in _TRUE + _FALSE:
                    raise ValueError(value)
                value = low in _TRUE
            elif not isinstance(value, bool):
                raise ValueError(value)
        elif f.kind is list:
            if isinstance(value, str):
                value = [v for v in (s.strip() for s in value.split(",")) if v]
            elif not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            value = list(value)
        elif f.kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            value = int(value)
        elif f.kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
        elif not isinstance(value, str):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise OptionError(f.name, f"{value!r}{where} is not a valid {f.kind.__name__}") from None
    if f.choices is not None and value not in f.choices:
        raise OptionError(f.name, f"{value!r}{where} is not one of {', '.join(f.choices)}")
    if f.check is not None and not f.check[0](value):
        raise OptionError(f.name, f"{value!r}{where} is out of range: it must be {f.check[1]}")
    return value


def validate(obj: Any) -> Any:
    """Check every field of a config object against its type and metadata; returns the object."""
    for f in fields_of(type(obj)):
        coerce(f, getattr(obj, f.name))
    return obj


def build(cls: type, values: dict[str, Any], origin: str = "") -> Any:
    """An instance of ``cls`` from the values given for its fields (others keep their defaults), checked."""
    known = {f.name: f for f in fields_of(cls)}
    kwargs = {}
    for name, value in values.items():
        if name not in known:
            raise OptionError(name, f"not an option of {cls.__name__}")
        kwargs[name] = coerce(known[name], value, origin)
    return cls(**kwargs)


def as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields_of(type(obj))}


def help_text(f: OptionField) -> str:
    """The --help line of a field (argparse formats it with %, so a literal % is doubled)."""
    text = f.doc or f.name.replace("_", " ")
    if f.kind is not bool and f.kind is not list:
        text += f" (default: {f.default})"
    return text.replace("%", "%%")
