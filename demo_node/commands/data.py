"""``demo-node data prepare``: tokenize a corpus once into memory-mapped token shards that nodes read."""

from __future__ import annotations

import argparse
import sys

from demo_node.commands.common import EXIT_USAGE


def add_parser(sub) -> None:
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
    prep.set_defaults(func=prepare)


def prepare(args: argparse.Namespace) -> int:
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
