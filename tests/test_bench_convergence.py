"""``demo-node bench convergence`` at tiny settings: the result's fields, the byte ordering, finite losses, the plots."""

import json
import math

import pytest

from demo_node.bench import convergence
from demo_node.cli import main


def test_schedule_warms_up_then_decays_to_a_tenth():
    assert convergence.schedule_factor(0, 100, 20) == pytest.approx(1 / 20)
    assert convergence.schedule_factor(20, 100, 20) == pytest.approx(1.0)
    assert convergence.schedule_factor(99, 100, 20) == pytest.approx(0.1)


def test_in_process_methods_share_data_and_count_bytes(tmp_path):
    r = convergence.run(nodes=2, steps=4, global_batch=8, windows=16, eval_every=2,
                        runs=["adamw-dense", "reference", "hivemind"], lrs={"adamw": [3e-3], "demo": [1e-3]},
                        workdir=str(tmp_path))
    m = r["methods"]
    assert set(m) == {"adamw", "adamw-dense", "reference", "hivemind"}
    assert m["adamw"]["bytes_per_node_step"] == 0
    assert m["adamw-dense"]["curve"][-1]["loss"] == m["adamw"]["curve"][-1]["loss"]  # the same math, not rerun
    assert m["adamw-dense"]["bytes_per_node_step"] == pytest.approx(2 * (2 - 1) / 2 * 4 * r["params"])
    assert 0 < m["reference"]["bytes_per_node_step"] < m["adamw-dense"]["bytes_per_node_step"]
    assert m["hivemind"]["not_run"].startswith("not run")
    assert "hivemind" in convergence.format_result(r)


def test_sweep_keeps_the_lowest_loss(tmp_path):
    r = convergence.run(nodes=1, steps=4, global_batch=4, windows=16, eval_every=2, runs=["adamw"],
                        lrs={"adamw": [1e-4, 1e-2]}, sweep_steps=2, workdir=str(tmp_path))
    a = r["methods"]["adamw"]
    assert [x["lr"] for x in a["sweep"]] == [1e-4, 1e-2]
    assert a["lr"] == min(a["sweep"], key=lambda x: x["loss"])["lr"]


@pytest.mark.swarm
def test_cli_runs_ours_beside_the_baselines(tmp_path, capsys):
    out = tmp_path / "conv"
    assert main(["bench", "convergence", "--nodes", "2", "--steps", "6", "--global-batch", "8", "--windows", "32",
                 "--eval-every", "3", "--runs", "adamw,adamw-dense,reference,ours", "--lrs", "adamw=3e-3;demo=1e-3",
                 "--out", str(out), "--workdir", str(tmp_path / "work")]) == 0
    r = json.loads((tmp_path / "conv.json").read_text())
    m = r["methods"]
    for name in ("adamw", "adamw-dense", "reference", "ours"):
        assert {"lr", "curve", "final_loss", "bytes_per_node_step", "seconds"} <= set(m[name]), name
        assert all(math.isfinite(c["loss"]) for c in m[name]["curve"]), name
        assert [c["step"] for c in m[name]["curve"]] == [3, 6], name
    assert m["adamw-dense"]["bytes_per_node_step"] > m["reference"]["bytes_per_node_step"] \
        > m["ours"]["bytes_per_node_step"] > 0
    assert m["ours"]["diverged_events"] == 0
    assert len(set(m["ours"]["first_rounds"])) == 1  # the nodes agree on the round training started at
    for kind in ("step", "bytes"):
        assert (tmp_path / f"conv_loss_vs_{kind}.png").stat().st_size > 1000
    assert "final loss" in capsys.readouterr().out
