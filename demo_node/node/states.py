"""The life of a node, as the proto's ``NodeState`` (it travels in greetings and in the control API's status)."""

from __future__ import annotations

import enum

from demo_node.wire.proto import demo_node_swarm_pb2 as spb


class NodeState(enum.Enum):
    STARTING = spb.STARTING
    """Starting its network, settling its run, loading its checkpoint."""
    JOINING = spb.JOINING
    """Downloading the parameters, or following the rounds it missed before it becomes a member."""
    TRAINING = spb.TRAINING
    """A member of the rounds."""
    LEAVING = spb.LEAVING
    """Finishing its last round before it leaves."""
    LEFT = spb.LEFT
    """Gone from the swarm."""

    @property
    def label(self) -> str:
        """Lower-case name, as events, DHT records and `demo-node status` show it."""
        return self.name.lower()


SERVING = (NodeState.JOINING, NodeState.TRAINING)
"""The states in which the health service says SERVING."""
