"""Fuzzing every decoder and every request handler: random and mutated bytes never crash, hang or move a node.

Each target runs a few hundred cases in the normal suite; ``pytest -m fuzz`` runs the same targets with 10,000
cases each (and the payload decoder's targets in test_codec.py keep their own counts). The handlers are fuzzed over
real libp2p streams against a real node (a one-node swarm on 127.0.0.1), which must still train and answer after.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import demo_node
from demo_node.crypto import Identity, decode_key, verify
from demo_node.net.records import RecordValidator
from demo_node.swarm.plan import Member
from demo_node.swarm.signing import BadSigned, open_body, open_statement, open_verdict, sign
from demo_node.swarm.state_sync import Snapshot, vouched
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

ME = Identity.generate()[0]
CI, DEEP = 200, 10_000
MODES = [pytest.param(CI, id="ci"), pytest.param(DEEP, id="deep", marks=pytest.mark.fuzz)]
FAST = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)


def mutations(seed: bytes):
    """Bytes near a valid message: flipped, cut, extended."""
    return st.one_of(
        st.binary(max_size=512),
        st.builds(lambda i, b: seed[:i] + bytes([b]) + seed[i + 1:], st.integers(0, max(0, len(seed) - 1)),
                  st.integers(0, 255)),
        st.builds(lambda i: seed[:i], st.integers(0, len(seed))),
        st.builds(lambda extra: seed + extra, st.binary(max_size=64)),
    )


VALID_STATEMENT = sign(ME, spb.Statement(peer=ME.peer_id, run_id="r", round=3, digest=b"d" * 16).SerializeToString())
VALID_BODY = sign(ME, spb.ShardBody(round=3, owner=ME.peer_id, mode=spb.EXCHANGE_SIGN,
                                    statements=[VALID_STATEMENT]).SerializeToString())


@pytest.mark.parametrize("examples", MODES)
def test_signed_message_openers_raise_nothing_but_bad_signed(examples):
    @settings(max_examples=examples, **FAST)
    @given(body=st.one_of(mutations(VALID_STATEMENT.body), mutations(VALID_BODY.body)),
           signature=mutations(VALID_STATEMENT.signature), key=st.binary(max_size=64))
    def check(body, signature, key):
        signed = spb.Signed(body=body, signature=signature, public_key=key)
        for open_ in (lambda: open_statement(signed, run_id="r"), lambda: open_body(signed, ME.peer_id, 3),
                      lambda: open_verdict(signed, ME.peer_id, ME.peer_id, 3)):
            try:
                open_()
            except BadSigned:
                pass

    check()


@pytest.mark.parametrize("examples", MODES)
def test_verify_and_key_parsing_never_raise(examples):
    @settings(max_examples=examples, **FAST)
    @given(peer=st.one_of(mutations(ME.peer_id), st.binary(max_size=80)), data=st.binary(max_size=64),
           signature=st.binary(max_size=300), key=st.one_of(mutations(ME.public_key), st.binary(max_size=400)))
    def check(peer, data, signature, key):
        assert verify(peer, data, signature, key) in (True, False)
        try:
            decode_key(key)
        except ValueError:
            pass

    check()


@pytest.mark.parametrize("examples", MODES)
def test_dht_record_validator_never_raises(examples):
    from hivemind.dht.validation import DHTRecord
    from hivemind.utils.serializer import MSGPackSerializer

    validator = RecordValidator(ME)
    subkeys = st.one_of(st.binary(max_size=40), st.builds(MSGPackSerializer.dumps, st.sampled_from(
        ["dn-peer:" + "x" * 46, "dn-run:demo-000000000000", "other", "dn-peer:12D3KooW"])))

    @settings(max_examples=examples, **FAST)
    @given(key=st.binary(max_size=32), subkey=subkeys, value=st.binary(max_size=300), expiration=st.floats())
    def check(key, subkey, value, expiration):
        record = DHTRecord(key, subkey, value, expiration)
        assert validator.validate(record) in (True, False)
        validator.strip_value(record)

    check()


@pytest.mark.parametrize("examples", MODES)
def test_state_vouching_never_raises(examples):
    @settings(max_examples=examples, **FAST)
    @given(statements=st.lists(mutations(VALID_STATEMENT.SerializeToString()), max_size=5),
           digest=st.binary(max_size=32), members=st.integers(0, 4))
    def check(statements, digest, members):
        signed = []
        for data in statements:
            try:
                signed.append(spb.Signed.FromString(data))
            except Exception:
                pass
        why = vouched(Snapshot(3, digest, [Member(bytes([i])) for i in range(members)], [], "{}", signed), "r")
        assert isinstance(why, str)

    check()


# -- the request handlers, over real streams -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def target():
    """A one-node swarm on 127.0.0.1 (every handler served) and a raw libp2p peer to send it anything."""
    from demo_node.net.accounting import Accounting
    from demo_node.net.config import NetworkConfig
    from demo_node.net.host import Host
    from demo_node.net.transport import Transport

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 4))
    opt = demo_node.SwarmOptimizer(model.parameters(), run_name="fuzz", listen=["/ip4/127.0.0.1/tcp/0"], lr=0.01,
                                   deadline=2.0)
    opt.join()
    attacker = Host(NetworkConfig(peers=opt.peer.maddrs, listen=["/ip4/127.0.0.1/tcp/0"])).start()
    yield opt, model, Transport(attacker, Accounting()), attacker
    attacker.shutdown()
    opt.leave()


KINDS = ["contribute", "fetch", "inputs", "evidence", "state", "hello"]


def valid_request(kind: str, opt) -> bytes:
    r = opt.round
    return {"contribute": spb.Contribute(round=r, plan=b"x", joining=True, verify=spb.Verify(round=r, owner=opt.me)),
            "fetch": spb.FetchResult(round=r, owner=opt.me),
            "inputs": spb.InputsRequest(round=r, owner=opt.me), "evidence": spb.EvidenceRequest(accused=opt.me),
            "state": spb.StateRequest(min_round=0), "hello": spb.StateRequest()}[kind].SerializeToString()


@pytest.mark.parametrize("examples", [pytest.param(CI // 4, id="ci"), pytest.param(DEEP // 4, id="deep",
                                                                                    marks=pytest.mark.fuzz)])
def test_handlers_answer_or_refuse_anything_and_the_node_goes_on(target, examples):
    opt, model, transport, attacker = target
    answered = {k: 0 for k in KINDS}

    @settings(max_examples=examples, **FAST)
    @given(kind=st.sampled_from(KINDS), data=st.data())
    def check(kind, data):
        payload = data.draw(mutations(valid_request(kind, opt)))
        try:
            attacker.call(transport.request(opt.me, kind, payload, timeout=20, limit=1 << 24), 30)
            answered[kind] += 1
        except Exception:
            pass  # a refusal may be a closed stream

    check()
    assert sum(answered.values()) > examples // 2, answered  # most requests get an answer, even junk ones
    # the node still trains: a step is a round, and its parameters are finite
    before = opt.round
    x = torch.randn(8, 16)
    model(x).square().mean().backward()
    opt.step(samples=8)
    opt.zero_grad()
    assert opt.round > before and all(torch.isfinite(p).all() for p in model.parameters())
    assert attacker.call(transport.request(opt.me, "hello", b"hi", timeout=10), 20)
