"""The benchmarks' command line (``python -m benchmarks``): every benchmark documents its options, and the scale
model's figures keep the shapes that the design depends on."""

import argparse
import io
import json
from contextlib import redirect_stdout

import pytest

from benchmarks.__main__ import BENCHMARKS, build_parser, main

NAMES = sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("name", NAMES)
def test_every_benchmark_prints_its_help(name):
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0 and out.getvalue().startswith(f"usage: python -m benchmarks {name}")
    parser = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"python -m benchmarks {name} {action.option_strings[0]} has no help"


def test_the_product_package_imports_no_benchmark():
    import subprocess
    import sys

    code = ("import sys, demo_node.cli as c; c.build_parser(); import demo_node.bench.train_bench; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'benchmarks'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    assert len(BENCHMARKS) == len(NAMES)


def test_the_scale_model_keeps_sign_exchange_flat_in_n_and_all_gather_linear():
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["model", "--params", "1e9", "--nodes", "8,1000", "--json", "-"]) == 0
    text = out.getvalue()
    rows = json.loads(text[text.index("{"):])["rows"]
    each_way = {(r["mode"], r["nodes"]): r["protocol_bytes_each_way"] for r in rows}
    assert each_way[("sign", 1000)] < 1.2 * each_way[("sign", 8)]
    assert each_way[("all-gather", 1000)] > 100 * each_way[("all-gather", 8)]
    # one bit per parameter each way dominates sign exchange at any size
    assert each_way[("sign", 1000)] > 1e9 / 8
    with pytest.raises(SystemExit, match="--params"):
        main(["model", "--params", "-1"])


def sign_bytes_at_8(*options: str) -> float:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["model", "--params", "1e9", "--nodes", "8", "--json", "-", *options]) == 0
    text = out.getvalue()
    rows = json.loads(text[text.index("{"):])["rows"]
    for r in rows:  # the parts add up to the whole
        assert abs(sum(r["parts_each_way"].values()) - r["wire_bytes_each_way"]) < 1e-6 * r["wire_bytes_each_way"]
    return next(r["protocol_bytes_each_way"] for r in rows if r["mode"] == "sign")


def test_the_scale_model_charges_audits_their_fraction_of_the_second_copy():
    every, quarter, off = sign_bytes_at_8(), sign_bytes_at_8("--audit", "0.25"), sign_bytes_at_8("--no-verify")
    copy = every - off  # the verifiers' second copy of the slices, and the verdicts
    assert off < quarter < every and abs((quarter - off) - copy / 4) < 0.01 * copy
    with pytest.raises(SystemExit, match="--audit"):
        main(["model", "--audit", "0"])
