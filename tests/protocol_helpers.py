"""What the protocol's unit tests share: four identities, a small optimizer and signed statements."""

import torch

from demo_node.core import DeMo
from demo_node.crypto import Identity
from demo_node.swarm.signing import sign
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

IDS = sorted((Identity.generate()[0] for _ in range(4)), key=lambda i: i.peer_id)
PEERS = [i.peer_id for i in IDS]
KEY = dict(zip(PEERS, IDS))
RUN = "run"


def make_opt(seed=0, values="fp32"):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(64, 96)), torch.nn.Parameter(torch.randn(96))]
    opt = DeMo(params, lr=0.01, topk=6, chunk=32, values=values)
    return params, opt


def statement(peer: bytes, round: int = 0, **fields) -> spb.Signed:
    st = spb.Statement(peer=peer, run_id=RUN, round=round, **fields)
    return sign(KEY[peer], st.SerializeToString())
