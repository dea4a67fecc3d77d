"""``python -m benchmarks model``: bytes per node and round, round time and compute utilisation of a swarm, on paper.

The protocol's bytes are not estimated but counted: every message a node sends or receives in a round is built
here as the node builds it (a signed statement, a shard result with its inclusion bits, a verdict) and measured, and
a payload's size per parameter comes from the codec itself. What the model does not know it takes as measured
constants, named below with the measurement they came from: libp2p's cost per stream at the wire, and the CPU a
stream costs. ``--check FILE`` sets the prediction against a ``python -m benchmarks swarm --json`` or ``python -m
benchmarks convergence --json`` result, point by point.

Per node and round, with S a whole payload, P parameters, N members and each node owning one shard:
- all-gather (the reference's exchange): every payload to every peer: (N-1) S up and down;
- relay: its slices to the owners and, as owner, its shard's other N-1 slices to each of N-1 requesters; the
  others' slices of its shard in and every owner's other slices back: (N-1) S each way, as much as an all-gather;
- sign: its slices to the owners and the others' in, its shard's signs out and the others' in: (N-1)/N (S + P/8)
  each way; with verification (three members or more) its slices again to the verifiers, and one verdict per shard;
  with audits of a fraction a of rounds, the slices and the signed verdicts in a of the rounds (asked for on a kept
  stream, one request per contributor) and a short "not audited" answer in the others;
- sparse (the node's ``--exchange sparse``, where ``return_k`` is the run's top-k): as sign, but each owner sends
  its shard's aggregate cut to its ``return_k`` largest coefficients per block (``swarm/shard_cut.py``, sign values
  with a block scale, as a payload codes them) instead of the signs: (N-1)/N (S + R) each way, R the cut's bytes;
  ``--index-coding ideal``
  prices every index list (payloads and cuts) at the entropy bound log2 C(block, k) bits instead of the codec's
  (Elias-Fano: 9 bits per index for 32 of 4096);
- on top, in every mode: the statements (each travels twice: N x 2 down, the owner's share up to N-1 requesters),
  one shard result envelope per owner (signature, inclusion bits: N/8 bytes), 2(N-1) exchanges (N-1 requests made
  and N-1 served, on streams kept from round to round) with their frames, and the DHT's background traffic.
Round time: communication is the larger direction over its link plus two round trips (contribution -> result ->
verdict); with overlap a round takes max(compute, communication), without it their sum.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from functools import cache

from demo_node.commands.common import emit
from demo_node.core.config import VALUE_MODES, DeMoConfig
from demo_node.core.layout import Layout
from demo_node.crypto import Identity
from demo_node.swarm.signing import sign
from demo_node.wire.bitpack import bits_for, elias_fano_high_len, elias_fano_low_bits
from demo_node.wire.codec import encoded_size
from demo_node.swarm.shard_cut import CUT_VALUES
from demo_node.wire.proto import demo_node_payload_pb2 as ppb
from demo_node.wire.proto import demo_node_swarm_pb2 as spb

FRAME_WIRE_BYTES = 30
"""libp2p's bytes at the wire per message a stream carries: a yamux header (12 B) and a Noise frame's length and
authentication tag (2 + 16 B). The round's streams are reused from round to round (demo_node/net/transport.py), so
opening one (about 360 B and a round trip, measured between two daemons) is no longer a cost per round."""
DHT_WIRE_BYTES_PER_S_PER_PEER = 1930
"""A node's DHT traffic per second and per other peer, both directions (its peer record refreshed every 5 s to up to
five replicas, the run record every 40 s, a count of the peers every 30 s, its share of serving the others', and the
daemons' own upkeep): the wire minus the accounted bytes minus the frames, per second, from `python -m benchmarks
swarm --netns` (tiny GPT, sign exchange): 13.5 KB/s at N = 8 (11.5-14.6 over four runs), 2.9-6.1 at N = 4, 0.6-1.4
at N = 2. It grows with the peers a record reaches and a lookup visits; past Kademlia's bucket (20 peers) it should
stop growing, which is assumed here (DHT_PEERS_CAP), not measured."""
DEFAULT_VALUES = DeMoConfig().values
"""The payloads' value precision a node uses unless told otherwise."""
DHT_PEERS_CAP = 19
EXCHANGE_CPU_SECONDS = 0.0026
"""CPU per exchange (a request and its answers on a reused stream), node and daemon together: the slope of CPU per node
and round against exchanges per node and round in the same runs (sign, defenses off: 0.015 s at 2 exchanges, 0.021 s
at 6, 0.041-0.052 s at 14)."""
MODES = ("all-gather", "relay", "sign", "sparse")


@dataclass(frozen=True)
class Setting:
    params: float
    nodes: int
    down_mbit: float = 100.0
    up_mbit: float = 100.0
    latency_s: float = 0.05
    compute_s: float = 10.0
    topk: int = 32
    chunk: int = 64
    values: str = DEFAULT_VALUES
    verify: bool = True
    audit: float = 1.0
    """The fraction of rounds verifiers audit (1: every round, the contributors pushing their copies)."""
    overlap: bool = True
    return_k: int = 32
    """sparse: coefficients per block of the cut aggregate an owner returns."""
    index_coding: str = "fixed"
    """How index lists are coded: "fixed" (as the codec writes them) or "ideal" (the entropy bound)."""
    payload: float | None = None
    """A whole payload's bytes (default: the codec's bytes per parameter of a large matrix x params)."""


@cache  # built and measured once: the same for every row
def payload_bytes_per_param(topk: int = 32, chunk: int = 64, values: str = DEFAULT_VALUES) -> float:
    """A whole payload's bytes per parameter, from the codec (a large matrix: per-tensor overheads vanish)."""
    side = chunk * 64
    layout = Layout.build([(side, side)], [0], chunk, topk)
    return encoded_size(layout, values) / layout.num_params


def index_saving_per_param(k: int, chunk: int = 64) -> float:
    """Bytes per parameter that coding the indices of k coefficients per block at the entropy bound, log2 C(block, k)
    bits per block, would save against the codec's cheapest format (Elias-Fano: 9 bits each for 32 of 4096)."""
    block = chunk * chunk
    codec = min(k * bits_for(block), k * elias_fano_low_bits(k, block) + elias_fano_high_len(k, block), block)
    ideal = (math.lgamma(block + 1) - math.lgamma(k + 1) - math.lgamma(block - k + 1)) / math.log(2)
    return max(0.0, codec - ideal) / 8 / block


_KEY = Identity.generate()[0]


@cache
def statement_bytes() -> int:
    """A signed statement as a node sends it (digest, plan, a digest round, no accusations)."""
    st = spb.Statement(peer=_KEY.peer_id, run_id="demo-0123456789ab", round=10**6, digest_round=10**6,
                       digest=bytes(16), plan=bytes(8))
    return len(sign(_KEY, st.SerializeToString()).SerializeToString())


@cache
def result_envelope_bytes(nodes: int, statements: int) -> int:
    """A signed shard result without its update: owner, round, inclusion bits, inputs hash, ``statements``."""
    body = spb.ShardBody(round=10**6, owner=_KEY.peer_id, mode=spb.EXCHANGE_SIGN, included=bytes((nodes + 7) // 8),
                         inputs_hash=bytes(32))
    one = spb.Statement(peer=_KEY.peer_id, run_id="demo-0123456789ab", round=10**6, digest=bytes(16), plan=bytes(8))
    body.statements.extend(sign(_KEY, one.SerializeToString()) for _ in range(statements))
    res = spb.ShardResult(status=spb.ShardResult.HAVE, body=sign(_KEY, body.SerializeToString()))
    return len(res.SerializeToString()) + 4


@cache
def verdict_bytes() -> int:
    v = spb.VerdictBody(round=10**6, owner=_KEY.peer_id, verifier=_KEY.peer_id, body_hash=bytes(32),
                        finding=spb.VerdictBody.CORRECT)
    return len(spb.VerdictReply(status=spb.ShardResult.HAVE, verdict=sign(_KEY, v.SerializeToString()))
               .SerializeToString()) + 4


@cache
def payload_header_bytes() -> int:
    """What every slice of a payload repeats: version, run id, round, sender, samples."""
    return len(ppb.Payload(version=1, run_id="demo-0123456789ab", round=10**6, sender=_KEY.peer_id,
                           samples=8.0).SerializeToString())


@cache
def not_audited_bytes() -> int:
    return len(spb.VerdictReply(status=spb.ShardResult.DONT_HAVE, not_audited=True).SerializeToString()) + 4


@cache
def audit_request_bytes() -> int:
    """An auditing verifier's request to one contributor, and the answer's envelope (the payload aside)."""
    ask = spb.InputsRequest(round=10**6, owner=_KEY.peer_id, senders=[_KEY.peer_id])
    return len(ask.SerializeToString()) + 4 + 2 + 4


def per_round(s: Setting, mode: str) -> dict:
    """Bytes each way per node and round (protocol bytes, and at the wire, and what they are made of), round time and
    utilisation."""
    n, p = s.nodes, s.params
    payload = s.payload if s.payload is not None else payload_bytes_per_param(s.topk, s.chunk, s.values) * p
    if s.index_coding == "ideal" and s.payload is None:
        payload -= index_saving_per_param(s.topk, s.chunk) * p
    signed = 64 + 8  # a payload's signature and its envelope
    share = (n - 1) / n
    parts: dict[str, float] = {}
    if mode == "all-gather":
        parts["payloads"], parts["payload signatures"] = (n - 1) * payload, (n - 1) * signed
    elif mode == "relay":
        # slices to the n-1 other owners; as owner, the shard's other n-1 slices to each of n-1 requesters
        parts["payloads"], parts["payload signatures"] = (n - 1) * payload, n * (n - 1) * signed
    else:
        # n-1 slices each way, each with the header that the whole payload's size counts once
        slices = share * payload + (n - 1 - share) * payload_header_bytes()
        parts["payloads"] = slices
        if mode == "sparse":
            cut = payload_bytes_per_param(s.return_k, s.chunk, CUT_VALUES)
            if s.index_coding == "ideal":
                cut -= index_saving_per_param(s.return_k, s.chunk)
            parts["cut aggregates"] = share * p * cut
        else:
            parts["signs"] = share * p / 8
        parts["payload signatures"] = (n - 1) * signed
        if s.verify and n >= 3:
            a = s.audit
            parts["verification"] = a * (slices + (n - 1) * (signed + verdict_bytes()))
            if a < 1:
                parts["verification"] += (n - 1) * ((1 - a) * not_audited_bytes() + a * audit_request_bytes())
    if mode != "all-gather":
        statements_each_result = 2 if n > 1 else 1  # 2N statements over N owners
        bare = result_envelope_bytes(n, 0)
        parts["result envelopes"] = (n - 1) * bare
        parts["statements"] = (n - 1) * (result_envelope_bytes(n, statements_each_result) - bare) + (
            2 * statement_bytes() if n > 1 else 0)
    protocol = sum(parts.values())
    exchanges = 2 * (n - 1)
    verified = mode in ("sign", "sparse") and s.verify and n >= 3
    # a request and its result, and a verdict where shards are verified; each way, half of them; an audit's request
    # and answer per contributor in the audited rounds
    frames = exchanges * (2 + verified) + (4 * s.audit * (n - 1) if verified and s.audit < 1 else 0)
    parts["libp2p framing"] = frames * FRAME_WIRE_BYTES / 2
    framed = protocol + parts["libp2p framing"]
    comm = _transfer_s(framed, s) + 2 * 2 * s.latency_s
    round_s = max(s.compute_s, comm) if s.overlap else s.compute_s + comm
    parts["DHT"] = dht_bytes_per_s(n) * round_s / 2
    wire = framed + parts["DHT"]
    comm = _transfer_s(wire, s) + 2 * 2 * s.latency_s
    round_s = max(s.compute_s, comm) if s.overlap else s.compute_s + comm
    return {"mode": mode, "nodes": n, "params": p, "payload_bytes": payload, "protocol_bytes_each_way": protocol,
            "wire_bytes_each_way": wire, "exchanges": exchanges, "communication_s": comm,
            "exchange_cpu_s": exchanges * EXCHANGE_CPU_SECONDS, "round_s": round_s,
            "utilisation": s.compute_s / round_s, "parts_each_way": parts}


def dht_bytes_per_s(nodes: int) -> float:
    """A node's DHT traffic per second, both directions (see DHT_WIRE_BYTES_PER_S_PER_PEER)."""
    return DHT_WIRE_BYTES_PER_S_PER_PEER * min(nodes - 1, DHT_PEERS_CAP)


def _transfer_s(each_way: float, s: Setting) -> float:
    """Seconds to move ``each_way`` bytes in each direction over the node's link (the slower direction decides)."""
    return max(each_way * 8 / (s.down_mbit * 1e6), each_way * 8 / (s.up_mbit * 1e6))


def run(params: list[float], nodes: list[int], down: float, up: float, latency: float, compute: float,
        verify: bool = True, overlap: bool = True, audit: float = 1.0, return_k: int = 32,
        index_coding: str = "fixed", values: str = DEFAULT_VALUES) -> dict:
    rows = [per_round(Setting(p, n, down, up, latency, compute, verify=verify, audit=audit, overlap=overlap,
                              return_k=return_k, index_coding=index_coding, values=values), m)
            for p in params for n in nodes for m in MODES]
    return {"link_down_mbit": down, "link_up_mbit": up, "latency_s": latency, "compute_s": compute,
            "verify": verify, "audit": audit, "overlap": overlap, "values": values,
            "payload_bytes_per_param": payload_bytes_per_param(values=values),
            "return_k": return_k, "index_coding": index_coding,
            "frame_wire_bytes": FRAME_WIRE_BYTES, "dht_wire_bytes_per_s_per_peer": DHT_WIRE_BYTES_PER_S_PER_PEER,
            "exchange_cpu_s": EXCHANGE_CPU_SECONDS, "rows": rows}


def _size(b: float) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{b:.0f} B"


def format_result(r: dict) -> str:
    lines = [f"links {r['link_down_mbit']:g}/{r['link_up_mbit']:g} Mbit/s down/up, {r['latency_s'] * 1000:.0f} ms, "
             f"compute {r['compute_s']:g} s per round, overlap {'on' if r['overlap'] else 'off'}, verification "
             f"{_verification(r)}; payload ({r.get('values', 'int8')} values) {r['payload_bytes_per_param']:.4f} B "
             f"per parameter; sparse: the top "
             f"{r.get('return_k', 32)} per block returned, indices {r.get('index_coding', 'fixed')}", "",
             f"{'params':>8}{'N':>6}  {'exchange':<11}{'each way':>11}{'B/param':>9}{'comm s':>10}{'round s':>10}"
             f"{'util':>7}{'exchanges':>11}{'their CPU s':>13}"]
    for row in r["rows"]:
        lines.append(f"{row['params']:>8.0e}{row['nodes']:>6}  {row['mode']:<11}{_size(row['wire_bytes_each_way']):>11}"
                     f"{row['wire_bytes_each_way'] / row['params']:>9.4f}"
                     f"{row['communication_s']:>10.1f}{row['round_s']:>10.1f}{row['utilisation']:>7.2f}"
                     f"{row['exchanges']:>11}{row['exchange_cpu_s']:>13.2f}")
    return "\n".join(lines)


def check(bench: dict) -> dict:
    """The model against a ``python -m benchmarks swarm --json`` result (per node and round, up + down) or a
    ``python -m benchmarks convergence --json`` result (per node and step, sent)."""
    if "methods" in bench:
        return check_convergence(bench)
    rows = []
    for o in bench["ours"]:
        mode = o.get("exchange", o["mode"])
        if mode not in ("relay", "sign", "sparse") or o["defenses"] == "baseline":
            continue  # another checkout's protocol is not what this models
        # the DHT's share of a round follows the round's length: the measured one, with the links out of the way
        s = Setting(bench["params"], o["nodes"], verify=o["defenses"] != "off", payload=bench["payload_bytes"],
                    audit=o.get("audit_fraction", 1.0),
                    compute_s=o["round_seconds"], latency_s=0.0, down_mbit=1e6, up_mbit=1e6)
        pred = per_round(s, mode)
        acct = o["accounted_bytes_per_node_round"]
        wire = o["wire_bytes_per_node_round"]
        measured_acct, measured_wire = acct["up_mean"] + acct["down_mean"], wire["up_mean"] + wire["down_mean"]
        rows.append({"nodes": o["nodes"], "mode": mode, "defenses": o["defenses"], "parts": pred["parts_each_way"],
                     "predicted_protocol": 2 * pred["protocol_bytes_each_way"], "measured_accounted": measured_acct,
                     "protocol_error": 2 * pred["protocol_bytes_each_way"] / measured_acct - 1,
                     "predicted_wire": 2 * pred["wire_bytes_each_way"], "measured_wire": measured_wire,
                     "wire_error": 2 * pred["wire_bytes_each_way"] / measured_wire - 1})
    return {"model": bench["model"], "params": bench["params"], "rows": rows, "against": "bench swarm",
            "per": "per node and round, up + down"}


def check_convergence(conv: dict) -> dict:
    """The model against a ``python -m benchmarks convergence --json`` result: each run of our swarm, its bytes sent
    per node and step (the mean node sends what the mean node receives, so this is the model's "each way")."""
    from benchmarks.convergence_worker import typed
    from demo_node.bench.payload_size import MODELS, payload_sizes

    rows, skipped = [], []
    for name, m in conv["methods"].items():
        if not name.startswith("ours") or "curve" not in m:
            continue
        if conv["model"] not in MODELS or not m.get("exchange") or not m.get("round_seconds"):
            skipped.append(name)  # a model whose payload the codec cannot size here, or a run from an older checkout
            continue
        # --variants gives its values as text: typed as the run's workers typed them
        options = {k: typed(str(v)) for k, v in conv.get("variants", {}).get(name, {}).items()}
        verify, audit = bool(options.get("verify_shards", True)), float(options.get("audit_fraction", 1.0))
        sizes = payload_sizes(conv["model"], int(options.get("topk", 32)), int(options.get("chunk", 64)))
        s = Setting(sizes["params"], conv["nodes"], verify=verify, audit=audit,
                    payload=sizes["ours_bytes"][str(options.get("values", DEFAULT_VALUES))],
                    compute_s=m["round_seconds"], latency_s=0.0, down_mbit=1e6, up_mbit=1e6)
        pred = per_round(s, m["exchange"])
        last = m["curve"][-1]  # the first seed's run: the one whose round length and exchange were recorded
        acct, wire = last["bytes_accounted"] / last["step"], last["bytes_sent"] / last["step"]
        rows.append({"method": name, "nodes": conv["nodes"], "mode": m["exchange"],
                     "defenses": "off" if not verify else ("on" if audit >= 1 else f"audit {audit:g}"),
                     "parts": pred["parts_each_way"],
                     "predicted_protocol": pred["protocol_bytes_each_way"], "measured_accounted": acct,
                     "protocol_error": pred["protocol_bytes_each_way"] / acct - 1,
                     "predicted_wire": pred["wire_bytes_each_way"], "measured_wire": wire,
                     "wire_error": pred["wire_bytes_each_way"] / wire - 1})
    return {"model": conv["model"], "params": conv["params"], "rows": rows, "skipped": skipped,
            "against": "bench convergence", "per": "per node and step, sent"}


def format_parts(rows: list[dict], key: str = "parts_each_way") -> str:
    """What each row's bytes at the wire are made of, each way per node and round, in bytes and shares of the whole."""
    lines = ["what a node's bytes at the wire are made of, each way per round:"]
    for row in rows:
        parts = row[key]
        whole = sum(parts.values())
        name = f"{row['params']:.0e} " if "params" in row else f"{row.get('defenses', '')} "
        lines.append(f"  {name}N={row['nodes']} {row['mode']}: " + ", ".join(
            f"{k} {_size(v)} ({v / whole:.1%})" for k, v in parts.items() if v))
    return "\n".join(lines)


def _verification(r: dict) -> str:
    if not r["verify"]:
        return "off"
    return "on" if r.get("audit", 1.0) >= 1 else f"audits of {r['audit']:g} of rounds"


def format_check(c: dict) -> str:
    lines = [f"the model against {c['against']} ({c['model']}, {c['params']:,} params), bytes {c['per']}",
             f"{'N':>3} {'exchange':<9}{'defenses':<16}{'protocol pred':>14}{'accounted':>11}{'error':>8}"
             f"{'wire pred':>12}{'wire':>12}{'error':>8}"]
    for q in c["rows"]:
        label = f"{q['defenses']} ({q['method']})" if "method" in q else q["defenses"]
        lines.append(f"{q['nodes']:>3} {q['mode']:<9}{label:<16}{q['predicted_protocol']:>14,.0f}"
                     f"{q['measured_accounted']:>11,.0f}{q['protocol_error']:>+8.1%}{q['predicted_wire']:>12,.0f}"
                     f"{q['measured_wire']:>12,.0f}{q['wire_error']:>+8.1%}")
    if c.get("skipped"):
        lines.append(f"not checked (no exchange or round length recorded, or a model the codec cannot size here): "
                     f"{', '.join(c['skipped'])}")
    return "\n".join(lines)


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def nodes_list(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",")]


def params_list(text: str) -> list[float]:
    values = [float(x) for x in text.split(",")]
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"--params: positive numbers, got {text!r}")
    return values


def add_parser(sub) -> None:
    md = sub.add_parser("model", help="bytes per node, round time and compute utilisation on paper, for any "
                        "model size and swarm size; --check sets it against a bench swarm or convergence result")
    md.add_argument("--params", default="1e9,1e10", help="parameters, comma-separated (default 1e9,1e10)")
    md.add_argument("--nodes", default="8,100,1000", help="swarm sizes, comma-separated")
    md.add_argument("--link", type=float, default=100.0, help="link speed in Mbit/s, both ways (default 100)")
    md.add_argument("--down", type=float, help="download speed in Mbit/s (default: --link)")
    md.add_argument("--up", type=float, help="upload speed in Mbit/s (default: --link)")
    md.add_argument("--latency", type=float, default=0.05, help="one-way latency in seconds (default 0.05)")
    md.add_argument("--compute", type=float, default=10.0, help="compute seconds per round (default 10)")
    md.add_argument("--no-verify", action="store_true", help="sign exchange without shard verification")
    md.add_argument("--audit", type=float, default=1.0, help="the fraction of rounds verifiers audit (the run "
                    "option --audit-fraction; default 1: every round)")
    md.add_argument("--values", choices=VALUE_MODES, default=DEFAULT_VALUES, help="the payloads' value precision (the "
                    f"run option --values; default {DEFAULT_VALUES}; a sparse cut's values are {CUT_VALUES} whatever "
                    "it is)")
    md.add_argument("--return-k", type=int, default=32, help="sparse rows: coefficients per block of the cut "
                    "aggregate an owner returns (default 32)")
    md.add_argument("--index-coding", choices=("fixed", "ideal"), default="fixed", help="index lists as the codec "
                    "writes them (Elias-Fano, 9 bits per index for 32 of 4096) or at the entropy bound log2 C(block, k) "
                    "(default: fixed)")
    md.add_argument("--no-overlap", action="store_true", help="communication after compute, not beside it")
    md.add_argument("--parts", action="store_true", help="also print what each row's bytes are made of (payloads, "
                    "signs, signatures, verification, result envelopes, statements, framing, DHT)")
    md.add_argument("--check", metavar="FILE", help="a `bench swarm --json` or `bench convergence --json` result to "
                    "check the model against")
    md.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    md.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        params, nodes = params_list(args.params), nodes_list(args.nodes)
        if not 0 < args.audit <= 1:
            raise ValueError(f"--audit: a fraction in (0, 1], got {args.audit}")
        if args.return_k <= 0:
            raise ValueError(f"--return-k: a positive count, got {args.return_k}")
    except ValueError as exc:
        raise SystemExit(f"python -m benchmarks model: {exc}") from None
    result = run(params, nodes, args.down or args.link, args.up or args.link, args.latency, args.compute,
                 verify=not args.no_verify, overlap=not args.no_overlap, audit=args.audit, return_k=args.return_k,
                 index_coding=args.index_coding, values=args.values)
    text = format_result(result)
    if args.parts:
        text += "\n\n" + format_parts(result["rows"])
    if args.check:
        result["check"] = check(load(args.check))
        text += "\n\n" + format_check(result["check"])
        if args.parts:
            text += "\n\n" + format_parts(result["check"]["rows"], key="parts")
    emit(result, text, args.json)
    return 0
