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


def sign_bytes_at_8(*options: str, mode: str = "sign") -> float:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["model", "--params", "1e9", "--nodes", "8", "--json", "-", *options]) == 0
    text = out.getvalue()
    rows = json.loads(text[text.index("{"):])["rows"]
    for r in rows:  # the parts add up to the whole
        assert abs(sum(r["parts_each_way"].values()) - r["wire_bytes_each_way"]) < 1e-6 * r["wire_bytes_each_way"]
    return next(r["protocol_bytes_each_way"] for r in rows if r["mode"] == mode)


def test_the_scale_model_charges_audits_their_fraction_of_the_second_copy():
    every, quarter, off = sign_bytes_at_8(), sign_bytes_at_8("--audit", "0.25"), sign_bytes_at_8("--no-verify")
    copy = every - off  # the verifiers' second copy of the slices, and the verdicts
    assert off < quarter < every and abs((quarter - off) - copy / 4) < 0.01 * copy
    with pytest.raises(SystemExit, match="--audit"):
        main(["model", "--audit", "0"])


def test_the_scale_model_prices_a_sparse_return_by_its_cut_and_its_index_coding():
    sign, sparse = sign_bytes_at_8(), sign_bytes_at_8(mode="sparse")
    wider = sign_bytes_at_8("--return-k", "64", mode="sparse")
    ideal = sign_bytes_at_8("--index-coding", "ideal", mode="sparse")
    assert ideal < sparse < wider < sign
    # the other owners' 7/8 of the parameters come as a cut of 32 of 4096 per block (about 20 bits per coefficient,
    # 0.02 B per parameter, as a top-32 payload) instead of 1/8 B of signs per parameter
    assert 0.08 * 1e9 < sign - sparse < 0.1 * 1e9
    with pytest.raises(SystemExit, match="--return-k"):
        main(["model", "--return-k", "0"])


def test_the_sparse_return_probe_measures_every_variant_and_names_a_bad_one():
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["sparse-return", "--variants", "sign,top8,top8-noef", "--seeds", "0", "--peers", "2",
                     "--steps", "2", "--windows", "4", "--json", "-"]) == 0
    text = out.getvalue()
    results = json.loads(text[text.index("{"):])["results"]
    assert set(results) == {"sign", "top8", "top8-noef"}
    assert results["sign"][0]["bytes_per_param"]["coded"] == 1 / 8
    # a cut of 8 per block costs a fraction of a bit per parameter, and an ideal index code less than 12 bits
    assert results["top8"][0]["bytes_per_param"]["ideal"] < results["top8"][0]["bytes_per_param"]["coded"] < 1 / 8
    assert 0 < results["top8"][0]["sign_agreement"] <= 1
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["sparse-return", "--variants", "top0"]) == 2
    assert "top0" in out.getvalue()


def test_sparse_return_results_of_other_seeds_pool_into_one_table(tmp_path):
    for seed in (0, 1):
        with redirect_stdout(io.StringIO()):
            assert main(["sparse-return", "--variants", "sign,top8", "--seeds", str(seed), "--peers", "2", "--steps",
                         "2", "--windows", "4", "--json", str(tmp_path / f"s{seed}.json")]) == 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["sparse-return", "--pool", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"), "--json",
                     str(tmp_path / "pooled.json")]) == 0
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    each = [json.loads((tmp_path / f"s{s}.json").read_text()) for s in (0, 1)]
    assert pooled["seeds"] == [0, 1]
    assert [x["final"] for x in pooled["results"]["top8"]] == [e["results"]["top8"][0]["final"] for e in each]
    assert "seed 0" in out.getvalue() and "seed 1" in out.getvalue()
    other = dict(each[1], steps=3)
    (tmp_path / "other.json").write_text(json.dumps(other))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["sparse-return", "--pool", str(tmp_path / "s0.json"), str(tmp_path / "other.json")]) == 2
    assert "steps" in out.getvalue()
