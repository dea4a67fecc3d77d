"""The layering stays true. Every module of ``demo_node`` (and ``benchmarks``) sits in one layer; a module may import
its own layer's package and the layers below it, never a layer above nor a sibling of its own rank. Imports under
``TYPE_CHECKING`` and inside functions count like any other. On top of the order: the math knows no network, the
network knows no torch, the node layer (the public Python API) knows no model, and the daemon uses nothing but the
public API."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS: list[set[str]] = [
    {"demo_node.errors"},
    {"demo_node.options", "demo_node.version", "demo_node.crypto", "demo_node.run_identity", "demo_node.limits"},
    {"demo_node.core", "demo_node.data", "demo_node.net"},  # the math, the tokens, the network: none knows another
    {"demo_node.wire", "demo_node.checkpoint_files"},  # bytes of the math: on the wire, on disk
    {"demo_node.models", "demo_node.swarm"},  # the models; the round protocol over the network
    {"demo_node.node"},  # SwarmOptimizer and its parts: the public API's home
    {"demo_node"},  # the public API's names
    {"demo_node.daemon"},  # the `demo-node join` program, on the public API
    {"demo_node.bench"},  # a volunteer's machine check
    {"demo_node.commands"},
    {"demo_node.cli"},
    {"demo_node.__main__"},
    {"benchmarks"},  # the project's benchmarks, outside the product package
]
"""Lowest first."""

FORBIDDEN = {
    "demo_node.core": ["hivemind", "grpc", "google.protobuf"],
    "demo_node.net": ["torch"],
    "demo_node.wire": ["hivemind"],
    "demo_node.node": ["demo_node.models", "demo_node.data"],
    "demo_node.models": ["demo_node.net", "demo_node.swarm", "demo_node.wire", "hivemind"],
    "demo_node.data": ["transformers"],
    "demo_node.daemon": ["demo_node.node", "demo_node.swarm", "demo_node.net", "demo_node.wire", "demo_node.core",
                         "hivemind"],
}
"""Beyond the order: what a layer must not import although the order would allow it (third-party ones included)."""


def layer_of(module: str) -> str:
    """The layer a module belongs to: the longest name of LAYERS that it is, or is inside of."""
    names = [name for layer in LAYERS for name in layer if module == name or module.startswith(name + ".")]
    assert names, f"{module} is in no layer: add it to LAYERS"
    return max(names, key=len)


def rank(layer: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if layer in names)


def modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("demo_node", "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            if "proto" in path.relative_to(REPO).parts:
                continue  # generated
            parts = path.relative_to(REPO).with_suffix("").parts
            out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def imports(module: str, path: Path) -> set[str]:
    """Every module this file imports, anywhere in it (module level, functions, TYPE_CHECKING blocks)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            folder = REPO / base.replace(".", "/")
            for a in node.names:  # `from demo_node import checkpoint_files` imports a module, not the package's name
                submodule = (folder / a.name).is_dir() or (folder / f"{a.name}.py").exists()
                out.add(f"{base}.{a.name}" if submodule else base)
    return out


MODULES = modules()


def test_every_module_is_in_a_layer():
    for module, _ in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_run_down_the_layers(module, path):
    mine = layer_of(module)
    for name in imports(module, path):
        if not (name.split(".")[0] in ("demo_node", "benchmarks")):
            continue
        theirs = layer_of(name)
        if theirs == mine:
            continue
        assert rank(theirs) < rank(mine), f"{module} ({mine}) imports {name} ({theirs}), which is not below it"


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_layer_imports_what_it_must_not_know(module, path):
    banned = FORBIDDEN.get(layer_of(module), [])
    for name in imports(module, path):
        for bad in banned:
            assert not (name == bad or name.startswith(bad + ".")), f"{module} imports {name}"


def test_the_order_catches_an_upward_import_under_type_checking(tmp_path):
    bad = tmp_path / "driver.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo_node.node.peer import Peer\n")
    found = {layer_of(n) for n in imports("demo_node.swarm.driver", bad) if n.startswith("demo_node")}
    assert "demo_node.node" in found and rank("demo_node.node") > rank("demo_node.swarm")
