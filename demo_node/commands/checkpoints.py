"""``demo-node export`` and ``demo-node generate``: what a checkpoint holds, as a Hugging Face model folder or as
sampled text."""

from __future__ import annotations

import argparse
import sys

from demo_node.commands.common import EXIT_USAGE, quiet_libraries


def add_parsers(sub) -> None:
    exp = sub.add_parser("export", help="a checkpoint as a Hugging Face model folder (safetensors, config, tokenizer)")
    exp.add_argument("checkpoint", help="a ckpt-*.pt file, or a checkpoint folder (its newest good checkpoint)")
    exp.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    exp.set_defaults(func=export)

    gen = sub.add_parser("generate", help="sample text from a checkpoint, to see what the swarm learned")
    gen.add_argument("checkpoint", help="a ckpt-*.pt file, or a checkpoint folder (its newest good checkpoint)")
    gen.add_argument("--prompt", default="", help="the text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=100, help="tokens to sample (default 100)")
    gen.add_argument("--temperature", type=float, default=0.8,
                     help="sampling temperature: lower is more predictable, 0 picks the likeliest (default 0.8)")
    gen.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest tokens (default 50)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    gen.set_defaults(func=generate)


def export(args: argparse.Namespace) -> int:
    quiet_libraries()
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


def generate(args: argparse.Namespace) -> int:
    quiet_libraries()
    from demo_node.models.export import generate

    try:
        text = generate(args.checkpoint, args.prompt, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    except (ValueError, OSError) as exc:
        print(f"demo-node generate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(text)
    return 0
