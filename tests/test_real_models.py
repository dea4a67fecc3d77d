"""Real models and data in real swarms: a Llama preset with a BPE trained on the embedded corpus, a node of two
processes under torchrun, transformers.Trainer driving the swarm optimizer, weights exported for
``from_pretrained``, and runs whose model, tokenizer or data differ refused by name."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from demo_node.daemon.children import NodeProcess, join_command
from tests.swarm_harness import NODE_ARGS, Cluster
from tests.test_swarm import assert_same_digests

pytestmark = pytest.mark.swarm

LLAMA_RUN = ["--batch-size", "2", "--model", "llama-20m", "--tokenizer", "bpe", "--bpe-vocab", "1024", "--data-bytes", "2000000",
             "--context", "64", "--warmup-rounds", "3", "--lr", "1e-3"]
"""The smallest Llama preset with a BPE trained on the first 2 MB of the embedded corpus (the stdlib)."""


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def _evals(node) -> list[float]:
    return [e["held_out_loss"] for e in node.of("eval")]


def test_llama_swarm_with_bpe_trains_and_exports(cluster, tmp_path):
    """Three nodes train llama-20m with a BPE each trained on the run's corpus: one tokenizer (one run id), the
    held-out loss falls, one digest; the checkpoint exports to a folder that transformers loads with the same
    logits, and generate samples text from it."""
    a = cluster.start("a", run_args=LLAMA_RUN).wait_started(240)
    b = cluster.start("b", a.maddrs, run_args=LLAMA_RUN).wait_started(240)
    c = cluster.start("c", a.maddrs, run_args=LLAMA_RUN).wait_started(240)
    nodes = [a, b, c]
    started = [n.of("started")[0] for n in nodes]
    assert len({json.dumps(s["run_config"]["tokenizer"], sort_keys=True) for s in started}) == 1
    assert started[0]["run_config"]["model"]["config"]["vocab_size"] == 1024
    for n in nodes:
        n.wait(lambda n=n: sum(e["members"] == 3 for e in n.rounds()) >= 15, 600, "15 rounds with 3 members")
    assert assert_same_digests(nodes, range(a.last_round() - 12, a.last_round() - 2)) >= 5
    for n in nodes:
        n.wait(lambda n=n: len(_evals(n)) >= 3, 300, "three evaluations")
    losses = _evals(a)
    assert losses[-1] < losses[0] - 0.3, f"held-out loss did not fall: {losses}"

    rc = a.terminate()
    assert rc == 0, a.tail()
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "demo_node", "export", str(tmp_path / "a" / "ckpt"), "--out",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    check = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import json, torch, transformers
        from demo_node.models.spec import build_model
        from demo_node.checkpoint_files import load_latest
        state = load_latest({str(tmp_path / "a" / "ckpt")!r})
        spec = json.loads(state["run_config"])["model"]
        ours = build_model(spec)
        with torch.no_grad():
            for p, v in zip(ours.parameters(), state["params"]):
                p.copy_(v)
        hf = transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})
        tok = transformers.AutoTokenizer.from_pretrained({str(out)!r})
        ids = torch.tensor([tok.encode("def main(argv):\\n    return 0\\n")])
        with torch.no_grad():
            same = torch.allclose(ours(ids), hf(ids).logits, atol=1e-5)
        print(json.dumps({{"same": bool(same), "tokens": ids.shape[1]}}))
    """)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout.strip().splitlines()[-1])["same"]
    gen = subprocess.run([sys.executable, "-m", "demo_node", "generate", str(tmp_path / "a" / "ckpt"), "--prompt",
                          "import ", "--max-new-tokens", "20"], capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.startswith("import ") and len(gen.stdout) > len("import ") + 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(folder: Path, args: list[str], name: str) -> NodeProcess:
    """``demo-node join`` as two gloo ranks on the loopback interface."""
    command = join_command(["--identity", str(folder / "identity.key"), "--checkpoint-dir", str(folder / "ckpt"),
                            *NODE_ARGS, *args])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "demo_node",
                *command[command.index("join"):]]
    return NodeProcess(torchrun, folder, name=name, env={"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"})


def test_a_rank_that_fails_to_start_stops_the_others(cluster, tmp_path):
    """Rank 0 of a torchrun node is refused by the swarm (its learning rate differs): rank 1 does not wait for it
    but ends too, with rank 0's reason."""
    a = cluster.start("a").wait_started()
    b = _torchrun(tmp_path / "b", ["--model", "tiny", "--lr", "0.1", "--peers", *a.maddrs], "b")
    cluster.nodes.append(b)
    assert b.proc.wait(timeout=240) != 0
    err = (tmp_path / "b" / "stderr.log").read_text()
    assert "rank 0 of this node failed to start" in err and "optimizer.lr" in err, err[-3000:]


def test_two_ranks_in_one_node(cluster, tmp_path):
    """A 2-node swarm where node B is two CPU processes under torchrun (gloo): every rank of B and node A hold one
    digest after the same round, and B's tokens per round are twice A's."""
    a = cluster.start("a").wait_started()
    b = _torchrun(tmp_path / "b", ["--model", "tiny", "--warmup-rounds", "5", "--lr", "3e-3", "--peers", *a.maddrs],
                  "b")
    cluster.nodes.append(b)
    b.wait_started(240)
    b.wait(lambda: len([e for e in b.of("rank_digest") if e["rank"] == 1]) >= 3, 400, "three digests of rank 1")
    for n in (a, b):
        n.wait(lambda n=n: sum(e["members"] == 2 for e in n.rounds()) >= 10, 400, "10 rounds with 2 members")
    by_step: dict[int, dict[int, tuple[int, str]]] = {}
    for e in b.of("rank_digest"):
        by_step.setdefault(e["step"], {})[e["rank"]] = (e["applied_round"], e["digest"])
    both = {s: d for s, d in by_step.items() if len(d) == 2}
    assert len(both) >= 3, by_step
    for step, d in both.items():
        assert d[0] == d[1], f"step {step}: ranks differ {d}"
        round_, digest = d[0]
        if a.digest_at(round_) is not None:
            assert a.digest_at(round_) == digest, f"round {round_}: node A {a.digest_at(round_)}, node B {digest}"
    a_tokens = {e["tokens"] for e in a.rounds() if e["members"] == 2 and e["contributed"]}
    b_tokens = {e["tokens"] for e in b.rounds() if e["members"] == 2 and e["contributed"]}
    assert a_tokens == {4 * 64} and b_tokens == {2 * 4 * 64}, (a_tokens, b_tokens)


TRAINER_SCRIPT = textwrap.dedent('''
    """A user's script: transformers.Trainer trains a Llama preset with demo_node.SwarmOptimizer as its optimizer."""
    import argparse, hashlib, json
    import torch, transformers
    import demo_node
    from demo_node.models.spec import build_model, model_spec

    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", nargs="*", default=[])
    ap.add_argument("--identity", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = build_model(model_spec("llama-20m", None, 256, 32)).hf   # the transformers model itself

    class Windows(torch.utils.data.Dataset):
        text = open(json.__file__, "rb").read()
        def __len__(self):
            return 10_000
        def __getitem__(self, i):
            start = (i * 7919) % (len(self.text) - 33)
            ids = torch.tensor(list(self.text[start:start + 32]))
            return {"input_ids": ids, "labels": ids.clone()}

    def say(event, **fields):
        print(json.dumps({"event": event, **fields}), flush=True)

    opt = demo_node.SwarmOptimizer(model.parameters(), run_name="trainer", peers=args.peers, identity=args.identity,
                                   listen=["/ip4/127.0.0.1/tcp/0"], control="", lr=1e-3, deadline=8.0,
                                   reporter=demo_node.Reporter("json"))
    opt.join()
    while opt.members < 2:  # train once both nodes are in (the first would otherwise finish alone)
        opt.wait_round(timeout=1.0)
    say("joined", round=opt.round, members=opt.members)

    class Report(transformers.TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            h = hashlib.sha256()
            for p in model.parameters():
                h.update(p.detach().float().numpy().tobytes())
            say("step", round=opt.round - 1, members=opt.members, digest=h.hexdigest()[:16])

    targs = transformers.TrainingArguments(output_dir=args.out, max_steps=12, per_device_train_batch_size=4,
                                           use_cpu=True, report_to=[], save_strategy="no", logging_steps=4,
                                           lr_scheduler_type="constant", dataloader_num_workers=0)
    trainer = transformers.Trainer(model=model, args=targs, train_dataset=Windows(), optimizers=(opt, None),
                                   callbacks=[Report()])
    result = trainer.train()
    say("trained", loss=result.training_loss)
    opt.leave()
''')


def test_trainer_drives_the_swarm(tmp_path):
    """transformers.Trainer with the swarm optimizer on a Llama preset, two nodes: both train, their rounds have
    two members, and after a round both hold the same parameters."""
    script = tmp_path / "trainer_script.py"
    script.write_text(TRAINER_SCRIPT)
    procs: list[NodeProcess] = []
    try:
        def start(name: str, peers: list[str] = ()) -> NodeProcess:
            folder = tmp_path / name
            folder.mkdir()
            cmd = [sys.executable, str(script), "--identity", str(folder / "id.key"), "--out", str(folder / "out"),
                   *(["--peers", *peers] if peers else [])]
            p = NodeProcess(cmd, folder, name=name)
            procs.append(p)
            return p

        a = start("a")
        a.wait(lambda: bool(a.of("started")), 240, "started")
        b = start("b", a.of("started")[0]["maddrs"])
        for p in (a, b):
            p.wait(lambda p=p: bool(p.of("trained")), 600, "Trainer.train() to return")
        for p in (a, b):  # the mean training loss under Trainer is below a uniform guess over the 256 bytes
            assert p.of("trained")[0]["loss"] < math.log(256) - 0.5, p.of("trained")
        shared = [e for e in b.of("step") if e["members"] == 2]
        assert shared, b.tail()
        a_steps = {e["round"]: e["digest"] for e in a.of("step")}
        matched = [e for e in shared if e["round"] in a_steps]
        assert matched and all(a_steps[e["round"]] == e["digest"] for e in matched), (a.of("step"), b.of("step"))
    finally:
        for p in procs:
            p.close()


def _tokenizer_json(text: str, folder: Path, name: str) -> Path:
    from demo_node.data.tokenizer import train_bpe

    path = folder / name
    path.write_text(train_bpe([text] * 3, 300).to_json())
    return path


def test_differing_model_tokenizer_or_data_is_refused_by_name(cluster, tmp_path):
    """A joiner whose model config, tokenizer or data differ from the run's is refused, the message naming the
    field; the same data at another path is the same run."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(3000)))
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text().replace("return", "yield"))
    copy = tmp_path / "copy" / "corpus.txt"
    copy.parent.mkdir()
    shutil.copy(corpus, copy)
    tok_a = _tokenizer_json(corpus.read_text()[:20000], tmp_path, "tok_a.json")
    tok_b = _tokenizer_json(other.read_text()[:20000], tmp_path, "tok_b.json")
    config = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}
    cfg_a, cfg_b = tmp_path / "cfg_a.json", tmp_path / "cfg_b.json"
    cfg_a.write_text(json.dumps(config))
    cfg_b.write_text(json.dumps({**config, "intermediate_size": 96}))

    def run(cfg: Path, tok: Path, data: Path) -> list[str]:
        return ["--model", "config", "--model-config", str(cfg), "--tokenizer", "file", "--tokenizer-file", str(tok),
                "--data", str(data), "--context", "32", "--lr", "1e-3"]

    a = cluster.start("a", run_args=run(cfg_a, tok_a, corpus)).wait_started()
    for name, args, field in [("model", run(cfg_b, tok_a, corpus), "model.config.intermediate_size"),
                              ("tokenizer", run(cfg_a, tok_b, corpus), "tokenizer.sha256"),
                              ("data", run(cfg_a, tok_a, other), "data.fingerprint")]:
        j = cluster.start(name, a.maddrs, run_args=args)
        assert j.proc.wait(timeout=240) == 3, j.tail()
        assert field in j.tail(60), f"{name}: {j.tail()}"
    same = cluster.start("same", a.maddrs, run_args=run(cfg_a, tok_a, copy)).wait_started()
    same.wait(lambda: any(e["members"] == 2 for e in same.rounds()), 300, "a round with both nodes")



def test_prepared_shards_are_the_same_run_as_their_source(cluster, tmp_path):
    """`demo-node data prepare` tokenizes a JSON-lines corpus into token shards (BPE trained on it, written beside
    them); a node on the shards and a node on the JSON lines are one run (same data fingerprint, same tokenizer)."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"def f{i}(x):\n    return x * {i} + {i % 7}\n"}) + "\n"
                              for i in range(4000)))
    shards = tmp_path / "shards"
    done = subprocess.run([sys.executable, "-m", "demo_node", "data", "prepare", str(corpus), "--out", str(shards),
                           "--bpe-vocab", "300"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and (shards / "tokenizer.json").exists() and (shards / "held-out.bin").exists()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                                  "max_position_embeddings": 32}))
    run = ["--model", "config", "--model-config", str(config), "--bpe-vocab", "300", "--context", "32"]
    a = cluster.start("a", run_args=[*run, "--data", str(corpus)]).wait_started()
    b = cluster.start("b", a.maddrs, run_args=[*run, "--data", str(shards)]).wait_started()
    b.wait(lambda: any(e["members"] == 2 for e in b.rounds()), 300, "a round with both nodes")
    assert a.of("started")[0]["run_config"]["data"] == b.of("started")[0]["run_config"]["data"]


def test_a_restarted_node_reads_on_where_its_stream_stopped(cluster, tmp_path):
    """The data position is in the checkpoint: a node stopped and started again with its identity and checkpoint
    folder continues its stream instead of reading its first windows again."""
    from demo_node.checkpoint_files import load_latest

    positions, steps = [], []
    for _ in range(2):  # the same folder both times: the same identity and checkpoints
        node = cluster.start("node", args=["--max-rounds", "4"])
        assert node.proc.wait(timeout=300) == 0, node.tail()
        node._reader.join(timeout=10)
        steps.append(sum(e["contributed"] for e in node.rounds()))
        positions.append(load_latest(tmp_path / "node" / "ckpt")["extra"]["data_position"])
    assert positions[0] == 4 * steps[0] > 0
    assert positions[1] == positions[0] + 4 * steps[1], (positions, steps)
