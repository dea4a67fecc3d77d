"""An ordinary ``demo-node join`` with one attack patched in: what a modified copy of the node run by an attacker
would send, as an owner, a verifier, a contributor, a DHT writer or a state server.

    python tests/adversary.py ATTACK -- <demo-node join options>

Nothing here is imported by the node itself: the attacks replace functions of the running process before the
command line starts, as a modified build would.
"""

from __future__ import annotations

import os
import sys

ATTACKS = {}


def attack(fn):
    ATTACKS[fn.__name__.replace("_", "-")] = fn
    return fn


@attack
def forge_statements() -> None:
    """As an owner: rewrite what the shard result says about the round. Every statement it passes on is replaced
    by one that says the peer leaves, with another digest (the signature kept), and a made-up peer is added as a
    joiner; then the body is signed as usual."""
    from demo_node.swarm import owner
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest_sign = owner.sign

    def rewriting_sign(identity, body_bytes):
        body = spb.ShardBody.FromString(body_bytes)
        forged = []
        for signed in body.statements:
            st = spb.Statement.FromString(signed.body)
            st.leaving, st.digest = True, bytes(len(st.digest) or 16)
            forged.append(spb.Signed(body=st.SerializeToString(), signature=signed.signature,
                                     public_key=signed.public_key))
        run_id = spb.Statement.FromString(body.statements[0].body).run_id if body.statements else ""
        fake = spb.Statement(peer=b"\x00\x24" + os.urandom(36), run_id=run_id, round=body.round, joining=True)
        forged.append(spb.Signed(body=fake.SerializeToString(), signature=os.urandom(64)))
        del body.statements[:]
        body.statements.extend(forged)
        return honest_sign(identity, body.SerializeToString())

    owner.sign = rewriting_sign


@attack
def flip_signs() -> None:
    """As an owner in sign exchange: send every sign of its shard the other way."""
    from demo_node.swarm.driver import RoundDriver

    honest = RoundDriver._packed_signs

    async def flipped(self, contributions, ranges):
        bits, nonzero = await honest(self, contributions, ranges)
        return bytes(b ^ 0xFF for b in bits), nonzero

    RoundDriver._packed_signs = flipped


def negated_cut(update, layout, ranges):
    """An owner's sparse-exchange update with every value of its cut negated, re-signed as the owner's (the coefficients
    the right ones): the cut's lie that tests/test_round_protocol.py and ``negate-cut`` tell."""
    from demo_node.core.contribution import BucketPart, Contribution
    from demo_node.core.quantize import QuantizedValues
    from demo_node.swarm.shard_update import Update
    from demo_node.wire.codec import decode, encode

    got = decode(update.cut, layout, expect=ranges)
    parts = {}
    for b, p in got.contribution.parts.items():
        v = p.values
        parts[b] = BucketPart(p.start, p.indices, QuantizedValues(v.mode, ~v.codes if v.mode == "sign" else -v.codes,
                                                                  v.scales))
    return Update(cut=encode(Contribution(parts, got.samples), layout, run_id=got.run_id, round=got.round,
                             sender=got.sender))


@attack
def negate_cut() -> None:
    """As an owner in sparse exchange: send its shard's cut with every value negated (a well-formed cut it signs, the
    coefficients the right ones)."""
    from demo_node.swarm.driver import RoundDriver

    honest = RoundDriver._shard_update

    async def negated(self, plan, contributions, ranges):
        update = await honest(self, plan, contributions, ranges)
        return negated_cut(update, self.layout, ranges) if update.cut else update

    RoundDriver._shard_update = negated


def _rewrite_payloads(change) -> None:
    """As a contributor: change every contribution before it is encoded (and signed, as its own)."""
    from demo_node.swarm import driver

    honest_encode = driver.encode

    def encode(contribution, layout, **kw):
        change(contribution, kw.get("round", 0)) if change.__code__.co_argcount == 2 else change(contribution)
        return honest_encode(contribution, layout, **kw)

    driver.encode = encode


@attack
def extreme_weight() -> None:
    """As a contributor: claim a finite but absurd sample weight."""

    def heavier(c):
        c.samples = 1e300

    _rewrite_payloads(heavier)


@attack
def extreme_scale() -> None:
    """As a contributor: scale every value up to the edge of float32 (int8 codes times scales near its maximum)."""

    def louder(c):
        for part in c.parts.values():
            if part.values.scales is not None:
                part.values.scales.fill_(3e38)

    _rewrite_payloads(louder)


@attack
def false_verdicts() -> None:
    """As a verifier: call every owner's correct update wrong, with made-up signs."""
    from demo_node.swarm import verifier
    from demo_node.swarm.shard_update import Update
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    async def lying_find(self, body, fetch):
        if body is None or not body.sign_bits:
            return spb.VerdictBody.UNVERIFIED, Update()
        return spb.VerdictBody.WRONG, Update(bytes(b ^ 0x55 for b in body.sign_bits), body.nonzero_blocks)

    verifier.VerifierRound._find = lying_find


@attack
def silent_owner() -> None:
    """As an owner: take every contribution to its shard and never answer (the streams stay open), as a node whose
    GPU hangs in the shard's arithmetic would; everything else it does as usual."""
    import asyncio

    from demo_node.swarm import owner

    honest = owner.OwnerRound.result_for

    async def result_for(self, requester):
        if requester != self.me:
            await asyncio.Event().wait()
        return await honest(self, requester)

    owner.OwnerRound.result_for = result_for


@attack
def censor() -> None:
    """As an owner: refuse every other member's contribution as late and aggregate its own alone, negated (for its own
    shard its contribution pulls uphill, signed as usual, so a verifier that only recomputes what the result names
    finds it correct)."""
    from demo_node.swarm import owner

    honest_arrive, honest_init = owner.OwnerRound.arrive, owner.OwnerRound.__init__
    mine: dict = {}

    def init(self, plan, me, *args, **kw):
        honest_init(self, plan, me, *args, **kw)
        mine[plan.round] = self.ranges

    def arrive(self, sender, joining, statement, payload, contribution=None):
        if sender == self.me:
            return honest_arrive(self, sender, joining, statement, payload, contribution)
        honest_arrive(self, sender, joining, statement, None)
        if payload is not None:
            self._refuse(sender, "round_closed")

    owner.OwnerRound.__init__, owner.OwnerRound.arrive = init, arrive

    def negate_own_shard(c, round):
        ranges = mine.get(round)
        if ranges and all(ranges.get(b) == (p.start, p.stop) for b, p in c.parts.items()):
            for part in c.parts.values():
                v = part.values
                v.codes = ~v.codes if v.mode == "sign" else -v.codes

    _rewrite_payloads(negate_own_shard)


@attack
def withhold_and_lie() -> None:
    """As an owner in sign exchange: send every sign of its shard as -1, and keep its own input from its verifier
    (out of the copy it sends it, and refused when the verifier asks)."""
    from demo_node.swarm import owner
    from demo_node.swarm.driver import RoundDriver
    from demo_node.swarm.exchange import RoundExchange
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest_signs, honest_part = RoundDriver._packed_signs, RoundExchange._verify_part
    honest_inputs = owner.OwnerRound.inputs

    async def all_negative(self, contributions, ranges):
        bits, nonzero = await honest_signs(self, contributions, ranges)
        return b"\xff" * len(bits), b"\xff" * len(nonzero)

    def part(self, owner):
        got = honest_part(self, owner)
        if got is not None and got[0].owner == self.ctx.me:
            got[0].ClearField("payload")
        return got

    def inputs(self, senders):
        return [spb.Signed() if p == self.me else s for p, s in zip(senders, honest_inputs(self, senders))]

    RoundDriver._packed_signs, RoundExchange._verify_part = all_negative, part
    owner.OwnerRound.inputs = inputs


@attack
def equivocate() -> None:
    """As an owner: sign another body for every other requester (its signs flipped, in relay its statements list
    changed), and report made-up digests in its statements."""
    import os

    from demo_node.swarm import owner
    from demo_node.swarm.driver import RoundDriver
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest = owner.OwnerRound.serialize_for
    count = [0]

    def serialize_for(self, requester):
        data = honest(self, requester)
        count[0] += 1
        if requester == self.me or count[0] % 2:
            return data
        msg = spb.ShardResult.FromString(data)
        if not msg.body.body:
            return data
        body = spb.ShardBody.FromString(msg.body.body)
        body.sign_bits = bytes(b ^ 0x0F for b in body.sign_bits)
        body.statements.extend(body.statements[:1])
        msg.body.CopyFrom(owner.sign(self.identity, body.SerializeToString()))
        return msg.SerializeToString()

    owner.OwnerRound.serialize_for = serialize_for
    honest_statement = RoundDriver._statement

    def statement(self, *args):
        self._digest = (self._digest[0], os.urandom(16))
        return honest_statement(self, *args)

    RoundDriver._statement = statement


@attack
def accuse_all() -> None:
    """As a member (one of two colluders): accuse every other member in every statement, and serve made-up
    evidence to whoever asks."""
    from demo_node.swarm.driver import RoundDriver
    from demo_node.swarm import handlers
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest_statement = RoundDriver._statement

    def statement(self, r, plan, *args):
        signed = honest_statement(self, r, plan, *args)
        st = spb.Statement.FromString(signed.body)
        st.accused[:] = sorted(p for p in plan.peers if p != self.me)
        from demo_node.swarm.signing import sign

        return sign(self.identity, st.SerializeToString())

    async def on_evidence(self, stream):
        msg = spb.EvidenceRequest.FromString(await stream.recv())
        made_up = spb.Evidence(accused=msg.accused, round=max(0, self.ctx.books.round - 1), kind=spb.Evidence.LIE,
                               claim=spb.Signed(body=b"\x08\x01", signature=b"\x00" * 64))
        await stream.send(made_up.SerializeToString())

    RoundDriver._statement = statement
    handlers.Handlers._on_evidence = on_evidence


@attack
def dht_junk() -> None:
    """As a DHT writer: every heartbeat, store run records that do not hash to their id, malformed and oversized
    peer records, and overwrite every other peer's record of the run with one saying it left."""
    from hivemind.utils.timed_storage import get_dht_time

    from demo_node.node.announcer import Announcer
    from demo_node.swarm import discovery

    honest_beat = Announcer._beat

    async def beat(self):
        dht = self.peer.host.dht
        key = discovery._peers_key(self.run_id)

        async def junk():
            expire = get_dht_time() + 60
            await dht.store(discovery.RUNS_KEY, '{"run": {"run_name": "demo"}}', expire, subkey="dn-run:" + self.run_id)
            await dht.store(discovery.RUNS_KEY, "not json", expire, subkey="dn-run:junk-000000000000")
            await dht.store(key, {"maddrs": "x" * 20000}, expire, subkey="dn-peer:" + self.peer.peer_id_b58)
            for p in await discovery.find_peers(dht, self.run_id):
                if p.peer_b58 != self.peer.peer_id_b58:
                    await dht.store(key, {"maddrs": [], "client": False, "round": 0, "state": "left"}, expire,
                                    subkey="dn-peer:" + p.peer_b58)

        import asyncio

        async def loop():
            while True:
                try:
                    await junk()
                except Exception:
                    pass
                await asyncio.sleep(1.0)

        asyncio.get_running_loop().create_task(loop())
        await honest_beat(self)

    Announcer._beat = beat


@attack
def poison_state() -> None:
    """As a state server: serve parameters with one value changed, under their own (correct) digest, with this
    node's own statement re-signed to vouch for it and the honest statements left out."""
    from demo_node.core.digest import digest
    from demo_node.node.sync import StateSync
    from demo_node.swarm.signing import sign
    from demo_node.wire.proto import demo_node_swarm_pb2 as spb

    honest = StateSync.provide

    async def poisoned(self, min_round):
        snap = await honest(self, min_round)
        if snap is None:
            return None
        import torch

        tensors = [bytearray(t) for t in snap.tensors]
        tensors[0][0:4] = bytes(torch.tensor([123.0]).numpy().tobytes())
        views = [torch.frombuffer(t, dtype=p.dtype).view(p.shape) for t, p in zip(tensors, self.replica.params)]
        snap.tensors = [bytes(t) for t in tensors]
        snap.digest = digest(views)
        own = spb.Statement(peer=self.peer.peer_id, run_id=self.run_id, round=snap.next_round,
                            digest_round=snap.next_round, digest=snap.digest)
        snap.statements = [sign(self.peer.host.identity, own.SerializeToString())]
        return snap

    StateSync.provide = poisoned


@attack
def slow_checkpoint() -> None:
    """Not an attack but a fault: from the second checkpoint on, the write stops half-way (the test kills the node
    there, as a power cut would)."""
    import json
    import time

    from demo_node import checkpoint_files as checkpoint

    real_save = checkpoint.torch.save
    count = [0]

    def save(obj, f):
        count[0] += 1
        if count[0] < 2:
            return real_save(obj, f)
        f.write(b"\x00" * 4096)
        f.flush()
        print(json.dumps({"event": "checkpoint_writing"}), flush=True)
        time.sleep(600)

    checkpoint.torch.save = save


def main() -> int:
    name, *rest = sys.argv[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    ATTACKS[name]()
    from demo_node.cli import main as cli_main

    return cli_main(["join", *rest])


if __name__ == "__main__":
    sys.exit(main())
