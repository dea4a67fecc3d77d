"""``python -m benchmarks convergence`` at tiny settings: result fields, byte ordering, finite losses, seeds, plots."""

import json
import math

import pytest

from benchmarks import convergence
from benchmarks.__main__ import main
from demo_node.models.presets import LLAMA_PRESETS


def test_schedule_warms_up_then_decays_to_a_tenth():
    assert convergence.schedule_factor(0, 100, 20) == pytest.approx(1 / 20)
    assert convergence.schedule_factor(20, 100, 20) == pytest.approx(1.0)
    assert convergence.schedule_factor(99, 100, 20) == pytest.approx(0.1)


def test_in_process_methods_share_data_and_count_bytes(tmp_path):
    r = convergence.run(nodes=2, steps=4, global_batch=8, windows=16, eval_every=2, runs=["adamw", "reference-sim"],
                        lrs={"adamw": [3e-3], "demo": [1e-3]}, workdir=str(tmp_path))
    m = r["methods"]
    assert set(m) == {"adamw", "reference-sim"}
    assert m["adamw"]["bytes_per_node_step"] == 0
    assert 0 < m["reference-sim"]["bytes_per_node_step"] < r["dense_fp32_bytes_per_node_step"]
    assert "reference-sim" in convergence.format_result(r)


def test_an_lr_swept_on_every_seed_wins_on_its_mean_and_its_runs_are_the_results(tmp_path):
    trained = []
    r = convergence.run(nodes=2, steps=4, global_batch=8, windows=16, eval_every=2, runs=["adamw"],
                        lrs={"adamw": [1e-4, 3e-3]}, seeds=[0, 1], sweep_seeds="all", workdir=str(tmp_path),
                        log=trained.append)
    m = r["methods"]["adamw"]
    assert r["sweep_seeds"] == [0, 1] and [x["lr"] for x in m["sweep"]] == [1e-4, 3e-3]
    for x in m["sweep"]:
        assert len(x["losses"]) == 2 and x["loss"] == pytest.approx(sum(x["losses"]) / 2)
    best = min(m["sweep"], key=lambda x: x["loss"])
    assert m["lr"] == best["lr"]
    # the chosen lr's sweep runs are its per-seed results: two lrs on two seeds are four runs, none more
    assert [x["final_loss"] for x in m["seed_runs"]] == best["losses"] and len(trained) == 4
    assert "mean of seeds 0,1" in convergence.format_result(r)
    with pytest.raises(ValueError, match="sweep_seeds"):
        convergence.run(runs=["adamw"], sweep_seeds="some", workdir=str(tmp_path))


def test_the_warmup_is_every_methods_and_names_itself_when_wrong(tmp_path):
    def final(warmup):
        r = convergence.run(nodes=2, steps=6, global_batch=8, windows=16, eval_every=6, runs=["adamw", "reference-sim"],
                            lrs={"adamw": [3e-3], "demo": [3e-3]}, warmup=warmup, workdir=str(tmp_path))
        return r["warmup"], {k: m["final_loss"] for k, m in r["methods"].items()}

    (w0, none), (w6, slow) = final(0), final(6)
    assert (w0, w6) == (0, 6)
    # a warm-up over every step takes smaller steps than none: each method ends elsewhere
    assert all(abs(none[k] - slow[k]) > 1e-4 for k in none)
    with pytest.raises(SystemExit, match="--warmup"):
        main(["convergence", "--warmup", "-1", "--runs", "adamw"])


def test_a_llama_preset_trains_over_the_corpus_bytes(tmp_path):
    r = convergence.run(nodes=2, steps=2, global_batch=2, windows=4, eval_every=2, runs=["adamw", "reference-sim"],
                        lrs={"adamw": [1e-3], "demo": [1e-3]}, model="llama-20m", device="cpu",
                        workdir=str(tmp_path))
    m = r["methods"]
    # llama-20m's own vocabulary is 8,192 tokens; over the corpus's bytes its embeddings are 256 rows each
    assert r["params"] == LLAMA_PRESETS["llama-20m"].parameter_count(vocab_size=256)
    assert r["device"] == "cpu"
    for name in ("adamw", "reference-sim"):
        losses = [c["loss"] for c in m[name]["curve"]]
        assert len(losses) == 1 and 3.0 < losses[0] < 6.0, name  # ln(256) = 5.55 for a fresh model
    assert m["reference-sim"]["bytes_per_node_step"] > 0
    assert "llama-20m Llama" in convergence.format_result(r)


def test_an_unusable_device_names_the_option(tmp_path):
    with pytest.raises(ValueError, match="--device 'nope'"):
        convergence.run(nodes=1, steps=1, global_batch=1, windows=4, runs=["adamw"], device="nope",
                        workdir=str(tmp_path))


@pytest.mark.swarm
def test_gloo_dense_is_adamw_and_its_bytes_are_measured(tmp_path):
    r = convergence.run(nodes=2, steps=4, global_batch=8, windows=16, eval_every=2, runs=["adamw-dense"],
                        lrs={"adamw": [3e-3]}, workdir=str(tmp_path))
    m = r["methods"]
    a, d = m["adamw"]["curve"], m["adamw-dense"]["curve"]
    assert [c["step"] for c in d] == [c["step"] for c in a] == [2, 4]
    for x, y in zip(a, d):  # all_reduce(sum) / N against autograd's sum of loss / N: the same up to rounding
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5, abs=1e-5)
    # two ranks exchange at least the flat fp32 gradient's half each way per step (ring: 2(N-1)/N x 4 x params)
    assert m["adamw-dense"]["bytes_per_node_step"] >= 0.9 * r["dense_fp32_bytes_per_node_step"]


@pytest.mark.swarm
def test_the_reference_over_gloo_is_its_simulation_and_its_all_gather_is_measured(tmp_path):
    r = convergence.run(nodes=2, steps=4, global_batch=8, windows=16, eval_every=2,
                        runs=["reference", "reference-sim"], lrs={"demo": [1e-3]}, workdir=str(tmp_path))
    m = r["methods"]
    real, sim = m["reference"], m["reference-sim"]
    assert not real["simulated"] and sim["simulated"]
    assert [c["step"] for c in real["curve"]] == [c["step"] for c in sim["curve"]] == [2, 4]
    for x, y in zip(sim["curve"], real["curve"]):  # the same top-k, gathered by gloo instead of concatenated
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5, abs=1e-5)
    # the all-gather sends each rank's int64 indices and fp32 values to the other: what the simulation computes,
    # plus TCP's and gloo's framing
    assert sim["bytes_per_node_step"] <= real["bytes_per_node_step"] < 1.5 * sim["bytes_per_node_step"]


@pytest.mark.swarm
def test_hivemind_optimizer_trains_and_its_bytes_are_measured(tmp_path):
    r = convergence.run(nodes=2, steps=4, global_batch=8, windows=16, eval_every=2, runs=["hivemind-8bit"],
                        lrs={"adamw": [3e-3]}, workdir=str(tmp_path))
    h = r["methods"]["hivemind-8bit"]
    assert "not_run" not in h, h.get("not_run")
    losses = [c["loss"] for c in h["curve"]]
    assert [c["step"] for c in h["curve"]] == [2, 4]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert h["bytes_per_node_step"] > 0
    # counted, not asserted: hivemind's all-reduce here now and then times out on the other peer's half
    assert len(h["partial_averages"]) == 2
    assert h["local_steps"] == [4, 4]  # one batch per peer and epoch: hivemind's epochs are the other methods' steps


def test_seeds_give_mean_and_spread_per_method(tmp_path):
    r = convergence.run(nodes=1, steps=3, global_batch=4, windows=16, eval_every=3, runs=["adamw"],
                        lrs={"adamw": [1e-4, 1e-2]}, seeds=[0, 1], workdir=str(tmp_path))
    a = r["methods"]["adamw"]
    finals = [x["final_loss"] for x in a["seed_runs"]]
    assert [x["seed"] for x in a["seed_runs"]] == [0, 1] and finals[0] != finals[1]
    assert a["final_loss"] == pytest.approx(sum(finals) / 2)
    assert a["final_loss_sd"] > 0
    assert a["lr"] == min(a["sweep"], key=lambda x: x["loss"])["lr"]  # chosen on seed 0, used for seed 1
    assert "final loss per seed" in convergence.format_result(r)


@pytest.mark.parametrize("sweep", ["full", "short"])
def test_sweep_keeps_the_lowest_loss(tmp_path, sweep):
    r = convergence.run(nodes=1, steps=4, global_batch=4, windows=16, eval_every=2, runs=["adamw"],
                        lrs={"adamw": [1e-4, 1e-2]}, sweep_steps=2, sweep=sweep, workdir=str(tmp_path))
    a = r["methods"]["adamw"]
    assert [x["lr"] for x in a["sweep"]] == [1e-4, 1e-2]
    assert a["lr"] == min(a["sweep"], key=lambda x: x["loss"])["lr"]
    assert r["sweep_steps"] == (4 if sweep == "full" else 2)
    if sweep == "full":  # the winning sweep run is the result: its final loss is the sweep's
        assert a["final_loss"] == min(x["loss"] for x in a["sweep"])


@pytest.mark.swarm
def test_cli_runs_ours_beside_the_baselines(tmp_path, capsys):
    out = tmp_path / "conv"
    assert main(["convergence", "--nodes", "2", "--steps", "6", "--global-batch", "8", "--windows", "32",
                 "--eval-every", "3", "--runs", "adamw,adamw-dense,reference-sim,ours", "--lrs", "adamw=3e-3;demo=1e-3",
                 "--variants", "b9:beta=0.9,topk=16", "--out", str(out), "--workdir", str(tmp_path / "work")]) == 0
    r = json.loads((tmp_path / "conv.json").read_text())
    m = r["methods"]
    assert r["model"] == "tiny" and r["variants"]["ours-b9"] == {"beta": "0.9", "topk": "16"}
    # a variant is our swarm with those options: its payload (top-16 of each chunk) is smaller than the default's
    assert m["ours-b9"]["bytes_accounted_per_node_step"] < m["ours"]["bytes_accounted_per_node_step"]
    for name in ("adamw", "adamw-dense", "reference-sim", "ours", "ours-b9"):
        assert {"lr", "curve", "final_loss", "bytes_per_node_step", "seconds"} <= set(m[name]), name
        assert all(math.isfinite(c["loss"]) for c in m[name]["curve"]), name
        assert [c["step"] for c in m[name]["curve"]] == [3, 6], name
    assert m["adamw-dense"]["bytes_per_node_step"] > m["reference-sim"]["bytes_per_node_step"] \
        > m["ours"]["bytes_per_node_step"] > 0
    # the wire adds ~1-2% of framing, but the two counters are read when a node's step returns, while its last
    # round's frames may still be on their way (a sixth of this 6-step window): equal within that, not ordered
    wire, accounted = m["ours"]["bytes_per_node_step"], m["ours"]["bytes_accounted_per_node_step"]
    assert 0.75 * wire <= accounted <= 1.25 * wire
    assert m["ours"]["diverged_events"] == 0
    # the schedule's origin is one round for all, announced once all are members: every node's first contribution
    # goes to it (none earlier, none a round late), and with diverged_events 0 none trains apart
    assert m["ours"]["first_rounds"] == [m["ours"]["start_round"]] * 2
    for kind in ("step", "bytes"):
        assert (tmp_path / f"conv_loss_vs_{kind}.png").stat().st_size > 1000
    assert "final loss" in capsys.readouterr().out
    # the scale model set against these runs: each of ours, with its own options (top-16: a smaller prediction) and
    # the exchange its rounds used; within the last round's frames in flight of the bytes it sent
    assert main(["model", "--check", str(tmp_path / "conv.json"), "--json", str(tmp_path / "check.json")]) == 0
    rows = {q["method"]: q for q in json.loads((tmp_path / "check.json").read_text())["check"]["rows"]}
    assert set(rows) == {"ours", "ours-b9"} and {q["mode"] for q in rows.values()} == {"relay"}
    assert rows["ours-b9"]["predicted_wire"] < rows["ours"]["predicted_wire"]
    assert all(abs(q["wire_error"]) < 0.35 for q in rows.values()), rows
    assert "bench convergence" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["b9", "b9:", ":beta=0.9", "b9:beta"])
def test_a_malformed_variant_names_itself(text):
    with pytest.raises(SystemExit, match="--variants"):
        main(["convergence", "--variants", text, "--runs", "adamw"])
