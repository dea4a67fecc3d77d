"""The command line a newcomer meets: every subcommand's --help, option docs, strict JSON event lines, and the
summary `demo-node swarm` ends with."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from demo_node import cli
from demo_node.daemon import settings as config
from demo_node.node.events import Reporter

SUBCOMMANDS = [["join"], ["status"], ["swarm"], ["bench"], ["bench", "payload"], ["bench", "train"],
               ["data"], ["data", "prepare"], ["export"], ["generate"]]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_prints_its_help(command):
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    assert out.getvalue().startswith("usage: demo-node " + " ".join(command))
    # every option says what it does
    parser = cli.build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"demo-node {' '.join(command)} {action.option_strings[0]} has no help"


def test_the_top_level_help_is_for_users():
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["--help"])
    text = out.getvalue()
    assert "demo-node join --peers" in text and "``" not in text and "component" not in text


def test_join_help_lists_every_option_with_its_doc():
    text = subprocess.run([sys.executable, "-m", "demo_node", "join", "--help"], capture_output=True, text=True,
                          check=True).stdout
    flat = " ".join(text.split())
    for f in config.FIELDS.values():
        assert f.doc, f"option {f.name} has no docstring"
        if f.hidden:
            assert f.flag not in text, f"test knob {f.flag} shows in --help"
            continue
        assert f.flag in text
        assert " ".join(f.doc.split())[:30] in flat, f"--help lacks the doc of {f.name}"
    assert any(f.hidden for f in config.FIELDS.values())


def test_program_defaults_show_in_help_and_apply():
    text = subprocess.run([sys.executable, "-m", "demo_node", "join", "--help"], capture_output=True, text=True,
                          check=True).stdout
    assert "(default: 127.0.0.1:7070)" in " ".join(text.split())
    cfg = config.load({}, env={})
    assert cfg.service.control == config.PROGRAM_DEFAULTS["control"] == "127.0.0.1:7070"
    hidden = config.load({"slowdown": "2"}, env={"DEMO_NODE_FAULT_AFTER_ROUNDS": "3"})  # hidden, yet they work
    assert hidden.train.slowdown == 2.0 and hidden.train.fault_after_rounds == 3


def test_json_event_lines_are_strict_json():
    out = io.StringIO()
    reporter = Reporter("json", stream=out)
    reporter.event("round", loss=float("nan"), tokens_per_s=float("inf"), nested={"x": [float("nan"), 1.5]})
    line = out.getvalue().strip()
    assert "NaN" not in line and "Infinity" not in line
    record = json.loads(line)
    assert record["loss"] is None and record["tokens_per_s"] is None and record["nested"]["x"] == [None, 1.5]


@pytest.mark.swarm
def test_swarm_ends_with_a_summary(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "demo_node", "swarm", "--nodes", "2", "--rounds", "6", "--timeout", "240",
         "--workdir", str(tmp_path), "--", "--eval-every", "2", "--threads", "1", "--batch-size", "4"],
        capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = out.stdout.split("summary:", 1)[1]
    assert re.search(r"held-out loss: \d+\.\d+ -> \d+\.\d+", summary), summary
    bytes_line = re.search(r"bytes per node per round: ([\d,]+) sent.*\((\d+)x what a node sent\)", summary)
    assert bytes_line and int(bytes_line.group(2)) > 1, summary
    assert "one digest" in summary, summary


def test_a_model_that_does_not_fit_is_refused_with_its_memory_need(tmp_path):
    """A node states what it will hold before it builds the model, and refuses a device that cannot hold it."""
    done = subprocess.run([sys.executable, "-m", "demo_node", "join", "--model", "llama-1b", "--tokenizer", "bytes",
                           "--batch-size", "4096", "--listen", "/ip4/127.0.0.1/tcp/0", "--control", "",
                           "--log-format", "json", "--identity", str(tmp_path / "id.key")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    memory = [json.loads(line) for line in done.stdout.splitlines() if '"memory"' in line][0]
    assert memory["total"] == sum(memory[k] for k in ("params", "gradients", "momentum", "activations", "exchange"))
    assert memory["params"] == 4 * 1_011_959_808 - 4 * (32000 - 256) * 2048 * 2  # fp32, the vocabulary of bytes
    for part in ("parameters", "gradients", "momentum", "activations", "--grad-checkpointing", "--batch-size"):
        assert part in done.stderr


@pytest.mark.parametrize("flags, named", [(["--model-config", "config.json"], "model_config"),
                                          (["--model", "llama-20m", "--tokenizer-file", "t.json"], "tokenizer_file"),
                                          (["--model", "config"], "model_config")])
def test_a_model_or_tokenizer_file_given_for_nothing_names_itself(tmp_path, flags, named):
    done = subprocess.run([sys.executable, "-m", "demo_node", "join", *flags, "--listen", "/ip4/127.0.0.1/tcp/0",
                           "--control", "", "--identity", str(tmp_path / "id.key")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 3 and named in done.stderr, done.stderr


@pytest.mark.parametrize("peer, why", [
    ("foo", "not an address"),
    ("/ip4/127.0.0.1/tcp/9", "no /p2p/<peer id>"),
    ("/ip4/127.0.0.1/tcp/9/p2p/QmNotAPeer", "is not a peer id"),
    ("/ip4/127.0.0.1/tcp/9/p2p/12D3KooWEPsLkbzCDxoBWKByx7CsL36SE5Cq6j7uVvSx25bmzqZq", "answers"),  # nobody listens
])
def test_a_bad_peers_address_is_one_line_naming_it(tmp_path, peer, why):
    """A mistyped or dead --peers: one line that names the address and says what is wrong, not a traceback; the
    Python API raises the same error."""
    done = subprocess.run([sys.executable, "-m", "demo_node", "join", "--peers", peer, "--listen",
                           "/ip4/127.0.0.1/tcp/0", "--control", "", "--identity", str(tmp_path / "id.key")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("demo-node:")]
    assert len(errors) == 1 and peer in errors[0] and why in errors[0], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    if why != "answers":
        import torch

        import demo_node
        from demo_node.errors import DemoNodeError

        with pytest.raises(DemoNodeError, match=why):
            demo_node.SwarmOptimizer([torch.nn.Parameter(torch.zeros(3))], peers=[peer])
