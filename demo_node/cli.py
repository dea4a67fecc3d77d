"""The ``demo-node`` command line: parse, then call the component that does the work."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

DESCRIPTION = """\
Train one model together with other people's GPUs over ordinary internet links (DeMo: decoupled momentum,
compressed to a tiny payload, exchanged over libp2p).

  demo-node join                         found a swarm (prints the address to give others)
  demo-node join --peers /ip4/.../p2p/.. join one
  demo-node swarm --nodes 3              three nodes on this machine, to try it out
  demo-node status                       how a running node is doing (also --leave, --checkpoint, --health)
  demo-node export ckpt/ --out model/    a checkpoint as a Hugging Face model folder

`demo-node <command> --help` lists a command's options."""

EXIT_USAGE = 2
EXIT_START_FAILED = 3
EXIT_FORCED = 130


def _quiet_libraries() -> None:
    import logging
    import os

    os.environ.setdefault("HIVEMIND_LOGLEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _join(args: argparse.Namespace) -> int:
    import logging
    import signal

    _quiet_libraries()
    from demo_node.daemon import settings as config
    from demo_node.daemon.program import JoinProgram
    from demo_node.errors import DemoNodeError
    from demo_node.node.events import Reporter, configure_logging

    try:
        cfg = config.load(vars(args), config_file=args.config)
    except config.ConfigError as exc:
        print(f"demo-node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reporter = Reporter(cfg.log.log_format)
    configure_logging(reporter, getattr(logging, cfg.log.log_level.upper()))
    program = JoinProgram(cfg, reporter)
    signals = []

    def on_signal(signum, frame):
        signals.append(signum)
        if len(signals) == 1:
            program.request_leave()  # finish the round, checkpoint, leave the DHT
        else:
            os._exit(EXIT_FORCED)  # a second signal: leave now

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        program.start()
    except (DemoNodeError, ValueError, FileNotFoundError, MemoryError) as exc:
        # MemoryError: the model's estimate does not fit the device (it says why)
        print(f"demo-node: {exc}", file=sys.stderr)
        program.close()
        return EXIT_START_FAILED
    try:
        return program.run()
    finally:
        program.close()


def _status(args: argparse.Namespace) -> int:
    import grpc

    from demo_node.node import control
    from demo_node.node.events import jsonable
    from demo_node.node.states import NodeState

    args.control = _control_address(args)
    try:
        if args.health:
            ok = control.healthy(args.control, timeout=args.timeout)
            print("SERVING" if ok else "NOT_SERVING")
            return 0 if ok else 1
        if args.checkpoint:
            reply = control.checkpoint(args.control)
            print(f"checkpoint after round {reply.round}: {reply.path or '(no checkpoint directory)'}")
            return 0
        if args.leave:
            print(f"node is {NodeState(control.leave(args.control).state).label}")
            return 0
        reply = control.status(args.control, timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"demo-node status: no node answers on {args.control} ({exc.code().name})", file=sys.stderr)
        return 1
    # every field with its own type (protobuf's JSON mapping writes 64-bit integers as strings), NaN as null
    info = {f.name: list(getattr(reply, f.name)) if f.is_repeated else getattr(reply, f.name)
            for f in reply.DESCRIPTOR.fields}
    info["state"] = NodeState(reply.state).label if reply.state else "unknown"
    if args.json:
        print(json.dumps(jsonable(info), indent=2))
    else:
        for key, value in info.items():
            print(f"{key:<16}{value}")
    return 0


def _control_address(args: argparse.Namespace) -> str:
    """The control API to ask: --control, else the running node that --peer / --dir pick (or the only one running
    here), else $DEMO_NODE_CONTROL, else the default address."""
    from demo_node.node import registry
    from demo_node.node.control import DEFAULT_ADDRESS

    if args.control:
        return args.control
    picked = bool(args.peer or args.dir)
    if not picked and os.environ.get("DEMO_NODE_CONTROL"):
        return os.environ["DEMO_NODE_CONTROL"]
    found = registry.find(args.peer, args.dir)
    if len(found) == 1:
        return found[0].control
    listing = "".join(f"\n  {e.peer_id}  control {e.control}  pid {e.pid}  {' '.join(e.folders)}" for e in found)
    if len(found) > 1:
        raise SystemExit(f"demo-node status: {len(found)} nodes run here{' that match' if picked else ''}: pick one "
                         f"with --peer (the end of its peer id) or --dir (its checkpoint folder):{listing}")
    if picked:
        what = " and ".join(x for x in (args.peer and f"peer id {args.peer!r}", args.dir and f"folder {args.dir!r}") if x)
        raise SystemExit(f"demo-node status: no node running here matches {what}")
    return DEFAULT_ADDRESS


def _swarm(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from demo_node.daemon.launcher import Swarm

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="demo-node-swarm-"))
    extra = list(args.node_args or [])
    print(f"{args.nodes} nodes on 127.0.0.1, state in {workdir}", flush=True)
    return Swarm(args.nodes, workdir, extra).run(args.rounds, timeout=args.timeout)


def _bench_optimizer(args: argparse.Namespace) -> int:
    import torch

    from demo_node.bench import optimizer_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    result = optimizer_bench.run(
        model=args.model,
        device=args.device,
        iters=args.iters,
        batch=args.batch,
        values=args.values,
        skip_reference=args.skip_reference,
    )
    _emit(result, optimizer_bench.format_result(result), args.json)
    return 0


def _bench_payload(args: argparse.Namespace) -> int:
    from demo_node.bench import payload_size

    results = [payload_size.payload_sizes(args.model, k, args.chunk) for k in args.topk]
    text = "\n\n".join(payload_size.format_sizes(r) for r in results)
    _emit(results if len(results) > 1 else results[0], text, args.json)
    return 0


def _netns(choice: str) -> bool:
    from demo_node.bench import netns

    why = netns.available()
    if choice == "on" and why:
        raise SystemExit(f"--netns on: {why}")
    return choice == "on" or (choice == "auto" and not why)


def _bench_swarm(args: argparse.Namespace) -> int:
    from demo_node.bench import swarm_bench

    nodes = [int(n) for n in args.nodes.split(",")]
    modes = tuple(args.modes.split(","))
    node_args = list(args.node_args or [])
    defenses = tuple(args.defenses.split(","))
    unknown = [d for d in defenses if d not in swarm_bench.DEFENSES]
    if unknown:
        raise SystemExit(f"demo-node bench swarm: --defenses {','.join(unknown)}: each must be one of "
                         f"{', '.join(swarm_bench.DEFENSES)}")
    result = swarm_bench.run(nodes, rounds=args.rounds, model=args.model, workdir=args.workdir, modes=modes,
                             averager=not args.skip_averager, node_args=node_args, defenses=defenses,
                             baseline=args.baseline,
                             netns=_netns(args.netns))
    _emit(result, swarm_bench.format_result(result), args.json)
    return 0


def _bench_wan(args: argparse.Namespace) -> int:
    from demo_node.bench import netns, wan_bench

    why = netns.available()
    if why:
        raise SystemExit(f"demo-node bench wan: {why}")
    result = wan_bench.run([int(n) for n in args.nodes.split(",")], down=args.down, up=args.up,
                           latency_ms=args.latency, compute=args.compute, rounds=args.rounds, overlap=args.overlap,
                           model=args.model, workdir=args.workdir, node_args=list(args.node_args or []),
                           shape_after_join=args.shape_after_join,
                           joiner=(args.joiner_down, args.joiner_up) if args.joiner_down else None)
    _emit(result, wan_bench.format_result(result), args.json)
    return 0


def _bench_api(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from demo_node.bench import api_bench

    result = api_bench.run(model=args.model, iters=args.iters, batch=args.batch, swarm_model=args.swarm_model,
                           swarm_batch=args.swarm_batch, rounds=args.rounds, repeats=args.repeats,
                           baseline=args.baseline, workdir=args.workdir, skip_swarm=args.skip_swarm)
    _emit(result, api_bench.format_result(result), args.json)
    return 0


def _bench_model(args: argparse.Namespace) -> int:
    from demo_node.bench import scale_model

    try:
        params, nodes = scale_model.params_list(args.params), scale_model.nodes_list(args.nodes)
        if not 0 < args.audit <= 1:
            raise ValueError(f"--audit: a fraction in (0, 1], got {args.audit}")
    except ValueError as exc:
        raise SystemExit(f"demo-node bench model: {exc}") from None
    result = scale_model.run(params, nodes, args.down or args.link, args.up or args.link, args.latency, args.compute,
                             verify=not args.no_verify, overlap=not args.no_overlap, audit=args.audit)
    text = scale_model.format_result(result)
    if args.parts:
        text += "\n\n" + scale_model.format_parts(result["rows"])
    if args.check:
        result["check"] = scale_model.check(scale_model.load(args.check))
        text += "\n\n" + scale_model.format_check(result["check"])
        if args.parts:
            text += "\n\n" + scale_model.format_parts(result["check"]["rows"], key="parts")
    _emit(result, text, args.json)
    return 0


def _bench_robust(args: argparse.Namespace) -> int:
    import torch

    from demo_node.bench import robust_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    result = robust_bench.run(peers=args.peers, steps=args.steps, model=args.model, batch=args.batch, lr=args.lr,
                              windows=args.windows, eval_every=args.eval_every, seed=args.seed)
    _emit(result, robust_bench.format_result(result), args.json)
    return 0


def _variants(text: str | None) -> dict[str, dict]:
    """'b99:beta=0.99;k64:topk=64,values=fp16' -> {"b99": {"beta": "0.99"}, "k64": {...}} (the worker types them)."""
    out = {}
    for part in filter(None, (text or "").split(";")):
        name, sep, opts = part.partition(":")
        pairs = [o.partition("=") for o in opts.split(",") if o.strip()]
        if not sep or not name.strip() or not pairs or any(not k.strip() or not eq for k, eq, _ in pairs):
            raise SystemExit(f"--variants: {part!r} is not NAME:key=value[,key=value]")
        out[name.strip()] = {k.strip(): v.strip() for k, _, v in pairs}
    return out


def _bench_convergence(args: argparse.Namespace) -> int:
    import torch

    from demo_node.bench import convergence

    torch.set_num_threads(max(1, args.threads))
    lrs = {}
    for part in filter(None, args.lrs.split(";") if args.lrs else []):
        family, _, values = part.partition("=")
        lrs[family.strip()] = [float(v) for v in values.split(",") if v.strip()]
    runs = [m.strip() for m in args.runs.split(",") if m.strip()] if args.runs else None
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()] if args.seeds else None
    try:  # the settings are checked before anything trains; a method that fails is reported in the result
        result = convergence.run(
            nodes=args.nodes, steps=args.steps, global_batch=args.global_batch, windows=args.windows,
            eval_every=args.eval_every, seed=args.seed, lrs=lrs, runs=runs, sweep_steps=args.sweep_steps,
            threads=max(1, args.threads), workdir=args.workdir, seeds=seeds, sweep=args.sweep,
            hivemind_matchmaking=args.hivemind_matchmaking, model=args.model, variants=_variants(args.variants),
            device=args.device, sweep_seeds=args.sweep_seeds, warmup=args.warmup)
    except ValueError as exc:
        raise SystemExit(f"demo-node bench convergence: {exc}") from None
    text = convergence.format_result(result)
    if args.out:
        result["plots"] = convergence.plot(result, args.out)
        text += "\n\nplots: " + ", ".join(result["plots"])
    _emit(result, text, f"{args.out}.json" if args.out else None)
    return 0


def _data_prepare(args: argparse.Namespace) -> int:
    from demo_node.daemon.config import WorkloadConfig
    from demo_node.daemon.workload import WorkloadError, make_tokenizer
    from demo_node.data.prepare import prepare

    workload = WorkloadConfig(model="llama-20m", tokenizer=args.tokenizer, tokenizer_file=args.tokenizer_file or "",
                              bpe_vocab=args.bpe_vocab, data=args.source, data_field=args.data_field,
                              data_bytes=args.data_bytes)
    try:
        tokenizer = make_tokenizer(workload)
        prepare(args.source, args.out, tokenizer, max_bytes=args.data_bytes, field=args.data_field)
    except (WorkloadError, ValueError, OSError) as exc:
        print(f"demo-node data prepare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _export(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from demo_node.models.export import export

    try:
        done = export(args.checkpoint, args.out)
    except (ValueError, OSError) as exc:
        print(f"demo-node export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for why in done.passed_over:
        print(f"demo-node export: passed over a newer checkpoint: {why}", file=sys.stderr)
    print(f"wrote {done.folder} from {done.source}: load it with "
          f"transformers.AutoModelForCausalLM.from_pretrained({args.out!r})")
    return 0


def _generate(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from demo_node.models.export import generate

    try:
        text = generate(args.checkpoint, args.prompt, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    except (ValueError, OSError) as exc:
        print(f"demo-node generate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(text)
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from demo_node.bench import train_bench

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = train_bench.run(model=args.model, batch=args.batch, context=args.context, vocab=args.vocab,
                             iters=args.iters, device=args.device, nodes=args.nodes, rounds=args.rounds,
                             workdir=args.workdir)
    _emit(result, train_bench.format_result(result), args.json)
    return 0


def _emit(result, text: str, json_path: str | None) -> None:
    print(text)
    if json_path == "-":
        print(json.dumps(result, indent=2))
    elif json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nJSON written to {json_path}")


def build_parser() -> argparse.ArgumentParser:
    from demo_node.daemon import settings as config
    from demo_node.core.config import VALUE_MODES
    from demo_node.bench.convergence_model import MODELS as CONVERGENCE_MODELS
    from demo_node.models.presets import MODEL_CHOICES, PRESETS, SHAPES_ONLY

    parser = argparse.ArgumentParser(prog="demo-node", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    join = sub.add_parser("join", help="run a node: found a swarm, or join one with --peers",
                          description="Every option also comes from DEMO_NODE_<NAME> or a TOML file (--config); "
                          "flags win over the environment, which wins over the file.")
    config.add_flags(join)
    join.set_defaults(func=_join)

    status = sub.add_parser("status", help="ask a running node (its local control API) how it is doing")
    status.add_argument("--control", default="",
                        help="host:port of the node's control API (default: the node --peer or --dir names, or the "
                        "only node running here, else $DEMO_NODE_CONTROL, else 127.0.0.1:7070)")
    status.add_argument("--peer", default="", help="the node whose peer id starts or ends with this")
    status.add_argument("--dir", default="", help="the node whose checkpoint folder (or identity file) is here")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--health", action="store_true", help="exit 0 if the node is serving (joining or training)")
    status.add_argument("--checkpoint", action="store_true", help="make the node write a checkpoint now")
    status.add_argument("--leave", action="store_true", help="make the node leave gracefully")
    status.add_argument("--timeout", type=float, default=10, help="seconds to wait for the node's answer (default 10)")
    status.set_defaults(func=_status)

    swarm = sub.add_parser("swarm", help="start N nodes on 127.0.0.1 and show their progress")
    swarm.add_argument("--nodes", type=int, default=3, help="how many nodes to start (default 3)")
    swarm.add_argument("--rounds", type=int, default=0, help="stop this many rounds after every node has joined (0: run until Ctrl+C)")
    swarm.add_argument("--timeout", type=float, default=0, help="stop after this many seconds (0: never)")
    swarm.add_argument("--workdir", help="where node identities, checkpoints and logs go (default: a new temp dir)")
    swarm.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    swarm.set_defaults(func=_swarm)

    data = sub.add_parser("data", help="corpora: tokenize one into memory-mapped token shards")
    data_sub = data.add_subparsers(dest="data", required=True)
    prep = data_sub.add_parser("prepare", help="tokenize a corpus (text, JSON lines, Parquet, a folder of them) into "
                               "token shards that `demo-node join --data DIR` reads memory-mapped",
                               description="Writes DIR/meta.json, DIR/train-*.bin, DIR/held-out.bin (uint16 or "
                               "uint32 tokens) and DIR/tokenizer.json; every 50th document is held out, as when "
                               "training on the source itself, and the run's data fingerprint is the same.")
    prep.add_argument("source", help="'stdlib', a file, or a folder")
    prep.add_argument("--out", required=True, metavar="DIR", help="the folder to write (made if missing)")
    prep.add_argument("--tokenizer", default="bpe", choices=["bytes", "bpe", "file"],
                      help="bytes, bpe (trained on the corpus, default) or file (--tokenizer-file)")
    prep.add_argument("--tokenizer-file", metavar="FILE", help="a Hugging Face tokenizer.json")
    prep.add_argument("--bpe-vocab", type=int, default=8192, help="vocabulary of a trained BPE (default 8192)")
    prep.add_argument("--data-field", default="text", help="JSON-lines field / Parquet column of the text")
    prep.add_argument("--data-bytes", type=int, default=2**62, help="most bytes of text to read (default: all)")
    prep.set_defaults(func=_data_prepare)

    exp = sub.add_parser("export", help="a checkpoint as a Hugging Face model folder (safetensors, config, tokenizer)")
    exp.add_argument("checkpoint", help="a ckpt-*.pt file, or a checkpoint folder (its newest good checkpoint)")
    exp.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    exp.set_defaults(func=_export)

    gen = sub.add_parser("generate", help="sample text from a checkpoint, to see what the swarm learned")
    gen.add_argument("checkpoint", help="a ckpt-*.pt file, or a checkpoint folder (its newest good checkpoint)")
    gen.add_argument("--prompt", default="", help="the text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=100, help="tokens to sample (default 100)")
    gen.add_argument("--temperature", type=float, default=0.8,
                     help="sampling temperature: lower is more predictable, 0 picks the likeliest (default 0.8)")
    gen.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest tokens (default 50)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    gen.set_defaults(func=_generate)

    bench = sub.add_parser("bench", help="benchmarks: measured side by side, printed as a table and JSON")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    opt = bench_sub.add_parser("optimizer", help="step time and payload bytes: our DeMo, the reference, AdamW")
    opt.add_argument("--model", default="bench", choices=list(PRESETS), help="GPT preset (default: bench, 10.9M)")
    opt.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    opt.add_argument("--iters", type=int, default=10, help="timed calls per figure (median reported)")
    opt.add_argument("--batch", type=int, default=8, help="sequences per forward/backward")
    opt.add_argument("--values", default="int8", choices=VALUE_MODES, help="value precision of our payload")
    opt.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    opt.add_argument("--skip-reference", action="store_true", help="do not time the reference re-statement")
    opt.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    opt.set_defaults(func=_bench_optimizer)

    pay = bench_sub.add_parser("payload", help="payload bytes per step for a model's shapes: reference vs ours")
    pay.add_argument("--model", default="olmo-1b", choices=[*PRESETS, *SHAPES_ONLY],
                     help="a GPT preset or the paper's OLMo-1B (default: olmo-1b)")
    pay.add_argument("--topk", type=int, nargs="+", default=[32], help="coefficients kept per block")
    pay.add_argument("--chunk", type=int, default=64, help="DCT chunk size (default 64: 64x64 blocks)")
    pay.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    pay.set_defaults(func=_bench_payload)

    sw = bench_sub.add_parser("swarm", help="round time and bytes per node: ours (relay, sign) vs hivemind's averager")
    sw.add_argument("--nodes", default="2,4,8", help="comma-separated swarm sizes")
    sw.add_argument("--rounds", type=int, default=10, help="measured rounds per run")
    sw.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    sw.add_argument("--modes", default="relay,sign", help="our exchange modes to measure")
    sw.add_argument("--skip-averager", action="store_true", help="do not run hivemind's DecentralizedAverager")
    sw.add_argument("--defenses", default="on", help="comma-separated: on (verified shards, robust aggregation), "
                    "audit (the same, verifiers auditing a quarter of the rounds), off; several run side by side")
    sw.add_argument("--netns", choices=["auto", "on", "off"], default="auto",
                    help="run each node in a network namespace of its own and read its bytes at the wire from its "
                    "link (needs root; auto: when possible), else from the TCP counters of its sockets")
    sw.add_argument("--baseline", metavar="DIR", help="also run the nodes of another demo-node checkout (an older "
                    "version: PYTHONPATH=DIR), with the same options")
    sw.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    sw.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    sw.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    sw.set_defaults(func=_bench_swarm)

    api = bench_sub.add_parser("api", help="what the Python API adds: a round alone vs through the API; a 3-node "
                               "swarm of user scripts vs demo-node join (vs an older checkout's, with --baseline)")
    api.add_argument("--model", default="bench", choices=list(PRESETS), help="GPT preset of the one-node part")
    api.add_argument("--iters", type=int, default=10, help="timed rounds per figure of the one-node part")
    api.add_argument("--batch", type=int, default=8, help="sequences per round in the one-node part")
    api.add_argument("--swarm-model", default="tiny", choices=list(PRESETS), help="GPT preset of the 3-node part")
    api.add_argument("--swarm-batch", type=int, default=8, help="sequences per node and round in the 3-node part")
    api.add_argument("--rounds", type=int, default=40, help="measured rounds per 3-node run")
    api.add_argument("--repeats", type=int, default=2, help="3-node runs of each kind, alternating")
    api.add_argument("--baseline", metavar="DIR", help="a checkout of another demo-node version: its demo-node join "
                     "runs beside this one's (PYTHONPATH=DIR)")
    api.add_argument("--skip-swarm", action="store_true", help="only the one-node part")
    api.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    api.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    api.set_defaults(func=_bench_api)

    rb = bench_sub.add_parser("robust", help="what robust aggregation costs in convergence: N peers simulated in one "
                              "process, the same data, the rule on and off")
    rb.add_argument("--peers", type=int, default=4, help="peers simulated in one process (default 4)")
    rb.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    rb.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    rb.add_argument("--batch", type=int, default=8, help="sequences per peer and step")
    rb.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    rb.add_argument("--windows", type=int, default=256, help="held-out windows per evaluation")
    rb.add_argument("--eval-every", type=int, default=25, help="steps between held-out evaluations (default 25)")
    rb.add_argument("--seed", type=int, default=0, help="seed of the model, the data order and the peers' batches")
    rb.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    rb.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    rb.set_defaults(func=_bench_robust)
    cv = bench_sub.add_parser("convergence", help="held-out loss against step and bytes sent per node: AdamW, dense "
                              "averaging, the reference DeMo and our swarm, the same data and global batch")
    cv.add_argument("--nodes", type=int, default=2, help="workers the global batch is split over (default 2)")
    cv.add_argument("--steps", type=int, default=145, help="optimizer steps of every run (default 145)")
    cv.add_argument("--global-batch", type=int, default=24, help="sequences per step over all nodes (default 24)")
    cv.add_argument("--windows", type=int, default=256, help="held-out windows per evaluation (default 256)")
    cv.add_argument("--eval-every", type=int, default=10, help="steps between held-out evaluations (default 10)")
    cv.add_argument("--seed", type=int, default=0, help="model seed; worker i's data seed is seed*1000+i")
    cv.add_argument("--seeds", help="several seeds, comma-separated (e.g. 0,1): every method runs once per seed, at "
                    "the lr its sweep chose (--sweep-seeds); the table gives the mean and sd of the final loss")
    cv.add_argument("--lrs", help="lr candidates per family, e.g. 'adamw=1e-3,3e-3,1e-2;demo=1e-3,3e-3' (the "
                    "default); adamw-dense and hivemind* run at adamw's choice")
    cv.add_argument("--sweep", choices=["full", "short"], default="full",
                    help="lr sweep over the full horizon (default: picks the lr that is best at the steps reported; "
                    "the best run is the result, so it costs one run per candidate) or short (--sweep-steps, then "
                    "one full run: cheaper, but a short horizon favours larger lrs)")
    cv.add_argument("--sweep-seeds", choices=["first", "all"], default="first",
                    help="the seeds each lr is tried on: the first (default), or all of --seeds (the lr with the "
                    "lowest mean final loss wins; with --sweep full those runs are the results, so it costs nothing "
                    "more than running every candidate on every seed)")
    cv.add_argument("--warmup", type=int, help="steps of linear lr warm-up before the cosine, the same for every "
                    "method (default: min(20, steps // 5))")
    cv.add_argument("--sweep-steps", type=int, help="steps of each short sweep run (default steps // 3)")
    cv.add_argument("--hivemind-matchmaking", type=float, default=2.0,
                    help="hivemind.Optimizer's matchmaking_time in seconds (default 2.0; loopback, groups of N)")
    cv.add_argument("--runs", help="methods, comma-separated (default all): adamw, adamw-dense, reference (over N "
                    "processes), reference-sim (simulated in one), ours, ours-k8, ours-fp16, ours-sign, hivemind, "
                    "hivemind-8bit")
    cv.add_argument("--variants", metavar="NAME:KEY=VALUE,...;...", help="more runs of our swarm, each with its "
                    "own SwarmOptimizer options, run as ours-NAME (e.g. 'b99:beta=0.99;k64:topk=64')")
    cv.add_argument("--model", default="tiny", choices=CONVERGENCE_MODELS,
                    help="the GPT or Llama preset every method trains, over the corpus's bytes (default: tiny)")
    cv.add_argument("--device", default="cpu", help="where every method trains: cpu (default), cuda, cuda:1, ...")
    cv.add_argument("--out", metavar="PREFIX", help="write PREFIX.json and PREFIX_loss_vs_{step,bytes}.png")
    cv.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    cv.add_argument("--workdir", help="where the swarm nodes' logs go (default: a new temp dir)")
    cv.set_defaults(func=_bench_convergence)
    tr = bench_sub.add_parser("train", help="a round of a real model: forward+backward, the DeMo step, memory "
                              "(estimate vs peak), MFU on a GPU; then N nodes: tokens/s and where a round goes")
    tr.add_argument("--model", default="llama-20m", choices=MODEL_CHOICES[:-1],
                    help="a Llama or GPT preset (default: llama-20m)")
    tr.add_argument("--batch", type=int, default=8, help="sequences per forward+backward (default 8)")
    tr.add_argument("--context", type=int, default=128, help="tokens per sequence (0: the preset's; default 128)")
    tr.add_argument("--vocab", type=int, default=8192, help="vocabulary of a Llama preset (a BPE of this size "
                    "in the swarm part; default 8192)")
    tr.add_argument("--iters", type=int, default=5, help="timed calls per figure (median)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda[:n] (the one-node part)")
    tr.add_argument("--threads", type=int, default=0, help="torch CPU threads of the one-node part")
    tr.add_argument("--nodes", type=int, default=2, help="nodes of the swarm part (0: skip it)")
    tr.add_argument("--rounds", type=int, default=10, help="measured rounds of the swarm part")
    tr.add_argument("--workdir", help="where the swarm part's logs go (default: a new temp dir)")
    tr.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    tr.set_defaults(func=_bench_train)
    md = bench_sub.add_parser("model", help="bytes per node, round time and compute utilisation on paper, for any "
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
    md.add_argument("--no-overlap", action="store_true", help="communication after compute, not beside it")
    md.add_argument("--parts", action="store_true", help="also print what each row's bytes are made of (payloads, "
                    "signs, signatures, verification, result envelopes, statements, framing, DHT)")
    md.add_argument("--check", metavar="FILE", help="a `bench swarm --json` or `bench convergence --json` result to "
                    "check the model against")
    md.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    md.set_defaults(func=_bench_model)

    wan = bench_sub.add_parser("wan", help="a swarm over emulated home links (a namespace per node, tbf up/down, a "
                               "delaying proxy for latency): round time, compute utilisation, join time, link bytes")
    wan.add_argument("--nodes", default="2,4,8", help="comma-separated swarm sizes")
    wan.add_argument("--down", type=float, default=50, help="download of every node, Mbit/s")
    wan.add_argument("--up", type=float, default=10, help="upload of every node, Mbit/s")
    wan.add_argument("--latency", type=float, default=50, help="one-way latency added to every connection, ms (the "
                     "round trip grows by twice it)")
    wan.add_argument("--compute", type=float, default=1.0, help="compute budget per node and round, seconds")
    wan.add_argument("--rounds", type=int, default=8, help="measured rounds per setting (at least 10 s)")
    wan.add_argument("--overlap", choices=["both", "on", "off"], default="both", help="run with --overlap, "
                     "without, or both")
    wan.add_argument("--model", default="tiny", choices=list(PRESETS), help="GPT preset (default: tiny)")
    wan.add_argument("--shape-after-join", action="store_true", help="rate-limit the links only once every node "
                     "is a member (join times are then over unlimited links)")
    wan.add_argument("--joiner-down", type=float, default=0.0, help="the last node joins once the others train "
                     "together, over a link of this download (Mbit/s) and --joiner-up")
    wan.add_argument("--joiner-up", type=float, default=10.0, help="the joining node's upload, Mbit/s")
    wan.add_argument("--workdir", help="where logs go (default: a new temp dir)")
    wan.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for stdout)")
    wan.add_argument("node_args", nargs=argparse.REMAINDER, help="after --: options passed to every node")
    wan.set_defaults(func=_bench_wan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "node_args", None) and args.node_args[0] == "--":
        args.node_args = args.node_args[1:]
    if args.command == "bench":
        # a benchmark killed with SIGTERM still stops the nodes and namespaces it started (its finally blocks run)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
