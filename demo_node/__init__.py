"""demo-node: volunteer nodes that train one model together with the DeMo optimizer.

The public Python API (loaded on first use, so that the command line starts without torch)::

    import demo_node
    opt = demo_node.SwarmOptimizer(model.parameters(), run_name="my-run", peers=[...], lr=3e-4)

``SwarmOptimizer`` (DeMo over a swarm), ``SwarmConfig`` (its options, typed: one part per component, ``RunName``,
``DeMoConfig``, ``DefenseConfig``, ``RoundConfig``, ``NetworkConfig``, ``ServiceConfig``), ``Peer`` (this process
on the swarm's network, to look at runs before building a model), ``Reporter`` (where event lines go), ``DeMo`` and ``DeMoConfig``
(the optimizer on one process), ``JoinError`` and ``ConfigMismatch`` (why a node cannot join),
``parameter_digest`` (the SHA-256 of a list of tensors that nodes compare: equal digests, equal parameters).
"""

from importlib import import_module

from demo_node.version import __version__

_WHERE = {
    "SwarmOptimizer": "demo_node.node.swarm_optimizer",
    "SwarmConfig": "demo_node.node.config",
    "RunName": "demo_node.node.config",
    "DefenseConfig": "demo_node.swarm.config",
    "RoundConfig": "demo_node.swarm.config",
    "NetworkConfig": "demo_node.net.config",
    "ServiceConfig": "demo_node.node.config",
    "Peer": "demo_node.node.peer",
    "Reporter": "demo_node.node.events",
    "JoinError": "demo_node.node.joining",
    "ConfigMismatch": "demo_node.run_identity",
    "DeMo": "demo_node.core.optimizer",
    "DeMoConfig": "demo_node.core.config",
    "parameter_digest": "demo_node.core.digest:digest",
}
__all__ = ["__version__", *_WHERE]


def __getattr__(name: str):
    if name in _WHERE:
        module, _, attr = _WHERE[name].partition(":")
        return getattr(import_module(module), attr or name)
    raise AttributeError(f"module 'demo_node' has no attribute {name!r}")
