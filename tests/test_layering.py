"""The layering stays true: the math knows no network, the network knows no model, the wire knows no network, the
node layer knows no model, and the programs use nothing but the public API."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "demo_node"
RULES = {
    "core": {"forbidden": ["demo_node.wire", "demo_node.net", "demo_node.swarm", "demo_node.node", "hivemind", "grpc",
                           "google.protobuf", "demo_node.models", "demo_node.data"]},
    "wire": {"forbidden": ["demo_node.net", "demo_node.swarm", "demo_node.node", "hivemind", "demo_node.models"]},
    "net": {"forbidden": ["torch", "demo_node.core", "demo_node.wire", "demo_node.swarm", "demo_node.node",
                          "demo_node.models"]},
    "swarm": {"forbidden": ["demo_node.node", "demo_node.models", "demo_node.data", "demo_node.daemon"]},
    # the node layer (the public Python API) works with any model: it knows none of ours, nor our programs
    "node": {"forbidden": ["demo_node.models", "demo_node.data", "demo_node.daemon", "demo_node.bench",
                           "demo_node.config", "demo_node.cli"]},
    # the programs use the public API only (``demo_node``'s own names), never the layers under it
    "daemon": {"forbidden": ["demo_node.node", "demo_node.swarm", "demo_node.net", "demo_node.wire", "demo_node.core",
                             "hivemind"]},
    "models": {"forbidden": ["demo_node.net", "demo_node.swarm", "demo_node.node", "demo_node.wire", "hivemind"]},
    # data knows tokens and files, no model and no network
    "data": {"forbidden": ["demo_node.net", "demo_node.swarm", "demo_node.node", "demo_node.wire", "demo_node.models",
                           "demo_node.daemon", "hivemind", "transformers"]},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_respect_the_layers(package):
    for path in (ROOT / package).rglob("*.py"):
        if "proto" in path.parts:
            continue
        for name in imports(path):
            for bad in RULES[package]["forbidden"]:
                assert not (name == bad or name.startswith(bad + ".")), f"{path.relative_to(ROOT)} imports {name}"
