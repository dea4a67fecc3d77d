"""Node processes for swarm tests: real ``demo-node join`` processes with real p2pd daemons on 127.0.0.1.

Each node's JSON event lines are collected by a reader thread (:class:`demo_node.daemon.children.NodeProcess`, the
same reader the launcher and the benchmarks use); tests wait on conditions over them with generous deadlines. Every
process a test starts (the node and its p2pd) is stopped by pid at the end, and the daemons' leftover unix sockets
are removed.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from demo_node.daemon.children import NodeProcess, join_command

NODE_ARGS = ["--batch-size", "4", "--deadline", "6", "--eval-every", "5", "--listen", "/ip4/127.0.0.1/tcp/0",
             "--threads", "1", "--control", "127.0.0.1:0"]
"""This node's own options."""
RUN_ARGS = ["--model", "tiny", "--warmup-rounds", "5", "--lr", "3e-3"]
"""Options that define the run (hashed into its id)."""
ADVERSARY = Path(__file__).with_name("adversary.py")


class NodeProc(NodeProcess):
    """A test node: ``demo-node join`` with the tests' options, its identity and checkpoints in ``folder``."""

    def __init__(self, folder: Path, peers: list[str] = (), args: list[str] = (), env: dict | None = None,
                 prefix: list[str] = (), name: str = "node", run_args: list[str] = RUN_ARGS, attack: str = ""):
        cmd = ["--identity", str(folder / "identity.key"), "--checkpoint-dir", str(folder / "ckpt"),
               *NODE_ARGS, *run_args, *args]
        if peers:
            cmd += ["--peers", *peers]
        command = join_command(cmd)
        if attack:  # the same node with one attack patched in (tests/adversary.py)
            command = [sys.executable, str(ADVERSARY), attack, "--", *command[command.index("join") + 1:]]
        super().__init__(command, folder, prefix=prefix, env=env, name=name)


class Cluster:
    """The nodes of one test, stopped by pid at the end (with their p2pd daemons and leftover sockets)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.nodes: list[NodeProc] = []
        self._sockets_before = set(glob.glob("/tmp/hivemind-*.sock"))

    def start(self, name: str, peers: list[str] = (), args: list[str] = (), **kw) -> NodeProc:
        node = NodeProc(self.tmp / name, peers, args, name=name, **kw)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for path in set(glob.glob("/tmp/hivemind-*.sock")) - self._sockets_before:
            try:
                os.unlink(path)
            except OSError:
                pass


def joined_round(node: NodeProc) -> int:
    """The first round this node applied as a member. Its round line follows the "joined" line, written by the same
    call: a test that reads the log between the two sees "joined" and no round yet, so this waits for the round."""
    node.wait(lambda: bool(node.rounds()), 60, "a round as a member")
    return node.rounds()[0]["round"]


def round_times(node: NodeProc, start: int, stop: int) -> list[float]:
    return [e["round_seconds"] for e in node.rounds() if start <= e["round"] < stop]
