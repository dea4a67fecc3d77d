"""The config loader: flags over DEMO_NODE_* over a TOML file over defaults; unknown keys name themselves."""

import pytest

from demo_node.daemon import settings as config
from demo_node.daemon.settings import ConfigError
from demo_node.run_identity import ConfigMismatch, check_same, config_hash, run_id


def write(tmp_path, text):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_priority_flags_over_env_over_file_over_defaults(tmp_path):
    path = write(tmp_path, '[optimizer]\nlr = 0.01\ntopk = 16\nbeta = 0.99\n[network]\npeers = ["/ip4/1.2.3.4/tcp/1/p2p/x"]\n')
    env = {"DEMO_NODE_TOPK": "8", "DEMO_NODE_BETA": "0.95"}
    cfg = config.load({"beta": "0.9"}, env=env, config_file=path)
    assert cfg.optimizer.lr == 0.01  # file
    assert cfg.optimizer.topk == 8  # env over file
    assert cfg.optimizer.beta == 0.9  # flag over env
    assert cfg.optimizer.chunk == 64  # default
    assert cfg.network.peers == ["/ip4/1.2.3.4/tcp/1/p2p/x"]
    assert cfg.explicit["beta"] == "flags" and cfg.explicit["topk"] == "environment"


def test_config_file_from_environment(tmp_path):
    path = write(tmp_path, "[train]\nbatch_size = 3\n")
    assert config.load({}, env={"DEMO_NODE_CONFIG": path}).train.batch_size == 3


def test_env_lists_and_booleans():
    cfg = config.load({}, env={"DEMO_NODE_PEERS": "/a, /b", "DEMO_NODE_OVERLAP": "yes"})
    assert cfg.network.peers == ["/a", "/b"] and cfg.round.overlap is True


@pytest.mark.parametrize(
    "text,needle",
    [("[optimizer]\nlrr = 1\n", "optimizer.lrr"), ("[optimiser]\nlr = 1\n", "[optimiser]"),
     ("[network]\nlr = 1\n", "network.lr"), ("[optimizer\n", "node.toml")],
)
def test_unknown_or_misplaced_keys_in_file_name_themselves(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        config.load({}, env={}, config_file=write(tmp_path, text))


def test_unknown_env_variable_names_itself():
    with pytest.raises(ConfigError, match="DEMO_NODE_LRR"):
        config.load({}, env={"DEMO_NODE_LRR": "1"})


@pytest.mark.parametrize(
    "flags,needle",
    [({"topk": "zero"}, "topk"), ({"topk": "0"}, "topk"), ({"values": "int4"}, "values"),
     ({"deadline": "-1"}, "deadline"), ({"exchange": "gossip"}, "exchange")],
)
def test_bad_values_name_their_option(flags, needle):
    with pytest.raises(ConfigError, match=needle):
        config.load(flags, env={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        config.load({}, env={}, config_file=str(tmp_path / "nope.toml"))


def test_run_identity_hashes_the_run_config_only():
    a = config.load({}, env={})
    b = config.load({"deadline": "3", "batch_size": "2"}, env={})  # this node's own options
    c = config.load({"lr": "0.5"}, env={})
    assert run_id(a.run_config()) == run_id(b.run_config())
    assert config_hash(a.run_config()) != config_hash(c.run_config())
    assert run_id(a.run_config()).startswith("demo-")


def test_mismatch_names_every_differing_field():
    mine = config.load({"lr": "0.5", "model": "bench"}, env={}).run_config()
    theirs = config.load({}, env={}).run_config()
    with pytest.raises(ConfigMismatch) as err:
        check_same(mine, theirs)
    assert {d[0] for d in err.value.differences} == {"optimizer.lr", "run.model"}
    assert "optimizer.lr" in str(err.value) and "run.model" in str(err.value)


def test_adopting_a_run_config():
    mine = config.load({"deadline": "3"}, env={})
    assert not mine.run_explicit()
    theirs = config.load({"lr": "0.5"}, env={}).run_config()
    adopted = mine.with_run_config(theirs)
    assert adopted.optimizer.lr == 0.5 and adopted.round.deadline == 3.0
    assert config.load({"lr": "0.1"}, env={}).run_explicit()


def test_every_option_has_a_flag():
    import argparse

    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    dests = {a.dest for a in parser._actions}
    assert set(config.FIELDS) <= dests


def test_resolving_the_run_against_announced_runs():
    import pytest as _pytest

    from demo_node.daemon.adopt import adopt_run as resolve_run
    from demo_node.node.joining import JoinError as NodeError

    theirs = config.load({"lr": "0.5"}, env={}).run_config()
    runs = {run_id(theirs): theirs}
    # no run options set: adopt the announced run of the same name
    assert resolve_run(config.load({}, env={}), runs).optimizer.lr == 0.5
    # the same options: join it; different ones: refused, naming them
    assert resolve_run(config.load({"lr": "0.5"}, env={}), runs).optimizer.lr == 0.5
    with _pytest.raises(ConfigMismatch, match="optimizer.lr"):
        resolve_run(config.load({"lr": "0.1"}, env={}), runs)
    # another name: a new run
    assert resolve_run(config.load({"run_name": "other"}, env={}), runs).optimizer.lr == 3e-3
    # by id (a run that is not announced is the swarm optimizer's to refuse: see settle_run)
    assert resolve_run(config.load({"run_id": run_id(theirs)}, env={}), runs).optimizer.lr == 0.5
    other = config.load({"lr": "0.7"}, env={}).run_config()
    with _pytest.raises(NodeError, match="several runs"):
        resolve_run(config.load({}, env={}), {**runs, run_id(other): other})


@pytest.mark.parametrize("key, value", [("bpe_vocab", 2**62), ("context", 2**40), ("seed", -1), ("seed", 2**64),
                                        ("data_bytes", 2**62), ("model", "../../etc/passwd")])
def test_an_announced_run_config_out_of_range_is_refused_by_name(key, value):
    """A peer's announced run config is adopted only through the options' own checks: a vocabulary, context, seed
    or read budget that would make the joiner allocate without bound (or crash in a library) names itself."""
    mine = config.load({}, env={})
    theirs = mine.run_config()
    theirs["run"] = dict(theirs["run"], **{key: value})
    with pytest.raises(config.ConfigError, match=key):
        mine.with_run_config(theirs)


def test_local_options_are_neither_hashed_nor_adopted():
    """Paths and column names are this machine's: two nodes that differ only there are one run, and a joiner
    keeps its own."""
    a = config.load({"data": "/a/corpus.jsonl", "data_field": "body", "model_config": "/a/c.json"}, env={})
    b = config.load({"data": "/b/corpus.jsonl", "tokenizer_file": "/b/t.json"}, env={})
    assert a.run_config() == b.run_config()
    assert "data" not in a.run_config()["run"] and not a.run_explicit()
    adopted = b.with_run_config(a.run_config())
    assert adopted.workload.data == "/b/corpus.jsonl" and adopted.workload.tokenizer_file == "/b/t.json"
