"""The data layer end to end: every --data format read into windows, the held-out split, the spec that names a
corpus by content, token shards, the window stream's disjointness and resumption, and deterministic tokenizers."""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tokenizers
import torch

from demo_node.data.errors import DataError
from demo_node.data.limits import HELD_OUT_EVERY
from demo_node.data.prepare import prepare
from demo_node.data.shards import read_shards
from demo_node.data.sources import files_of, read_documents, source_format, split_documents
from demo_node.data.stream import WindowStream, held_out_windows, node_seed
from demo_node.data.tokenizer import (
    Tokenizer,
    byte_tokenizer,
    load_tokenizer,
    train_bpe,
)
from demo_node.data.tokens import documents_for_tokenizer, open_corpus

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu",
         "xi", "omicron", "pi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega", "def", "return", "class", "import",
         "yield", "self", "none", "true", "false")


def document(i: int, words: int = 60) -> str:
    """Document ``i``: made-up text that starts with a marker no other document has."""
    rng = random.Random(i)
    return f"doc{i:05d}: " + " ".join(rng.choice(WORDS) for _ in range(words)) + ".\n"


def docs(n: int, words: int = 60) -> list[str]:
    return [document(i, words) for i in range(n)]


def write_jsonl(path, texts, field="text"):
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


def write_parquet(path, texts, column="text"):
    pq.write_table(pa.table({column: texts, "id": list(range(len(texts)))}), path, row_group_size=37)
    return path


def write_folder(path, texts):
    path.mkdir()
    for i, t in enumerate(texts):
        (path / f"{i:04d}.txt").write_text(t)
    return path


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(docs(300), 380)


def first_batches(stream, n):
    return [stream.next()[0] for _ in range(n)]


def check_windows(corpus, context=16, batch=4):
    stream = WindowStream(corpus, context, batch, seed=7)
    x, y = stream.next()
    assert x.shape == y.shape == (batch, context) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < corpus.vocab_size
    ex, ey = held_out_windows(corpus, context, 5)
    assert ex.shape == (5, context) and torch.equal(ex[:, 1:], ey[:, :-1])
    return stream


# every format, end to end


def test_text_file_holds_out_its_last_tenth(tmp_path):
    text = "".join(docs(80))
    path = tmp_path / "book.txt"
    path.write_text(text)
    assert source_format(str(path)) == "text"
    corpus = open_corpus(str(path), byte_tokenizer())
    check_windows(corpus)
    data = text.encode() + b"\n\n"
    cut = (len(data) - 2) * 9 // 10
    # the one document is cut in two, and each piece is ended by the separator
    assert bytes(corpus.train.numpy()) == data[:cut] + b"\n\n"
    assert bytes(corpus.held_out.numpy()) == data[cut:]


def test_folder_of_text_files_holds_out_every_50th_file(tmp_path):
    folder = write_folder(tmp_path / "texts", docs(130, words=120))
    (folder / ".hidden").write_text("not training text")
    assert source_format(str(folder)) == "text"
    split = list(split_documents(str(folder)))
    assert [t[:8] for held, t in split if held] == ["doc00049", "doc00099"]
    assert len(split) == 130 and not any(".hidden" in t or "not training" in t for _, t in split)
    check_windows(open_corpus(str(folder), byte_tokenizer()))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_records_are_documents(tmp_path, bpe, fmt):
    texts = docs(200)
    path = write_jsonl(tmp_path / "c.jsonl", texts) if fmt == "jsonl" else write_parquet(tmp_path / "c.parquet", texts)
    assert source_format(str(path)) == fmt
    split = list(split_documents(str(path)))
    assert [t for _, t in split] == texts
    assert [i for i, (held, _) in enumerate(split) if held] == [49, 99, 149, 199]
    for tok in (byte_tokenizer(), bpe):
        corpus = open_corpus(str(path), tok)
        assert corpus.spec["format"] == fmt
        check_windows(corpus)
    # a BPE stream: each document's ids, then <|endoftext|>
    corpus = open_corpus(str(path), bpe)
    train = corpus.train.numpy().tolist()
    first = bpe.encode(texts[0])
    assert train[: len(first) + 1] == first + [bpe.eos_id]


def test_a_folder_of_several_formats_reads_them_in_name_order(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", docs(3))
    write_parquet(folder / "b.parquet", [document(i) for i in range(3, 6)])
    (folder / "c.txt").write_text(document(6))
    assert source_format(str(folder)) == "mixed"
    assert list(read_documents(str(folder))) == docs(7)


def test_stdlib_is_the_default_source():
    texts = read_documents("stdlib", max_bytes=20_000)
    assert "stdlib" == source_format("stdlib") and sum(len(t.encode()) for t in texts) == 20_000
    assert files_of("stdlib")[0].suffix == ".py"


# token shards


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_prepared_shards_read_as_the_source_they_came_from(tmp_path, bpe, dtype):
    source = str(write_jsonl(tmp_path / "c.jsonl", docs(400)))
    out = tmp_path / "shards"
    meta = prepare(source, out, bpe, max_bytes=100_000, shard_tokens=3000, dtype=dtype, progress=False)
    assert meta["dtype"] == dtype and len(meta["train"]) > 3 and source_format(str(out)) == "tokens"
    itemsize = 2 if dtype == "uint16" else 4
    assert (out / "train-00000.bin").stat().st_size == 3000 * itemsize
    raw = open_corpus(source, bpe, max_bytes=100_000)
    shards = open_corpus(str(out), bpe, max_bytes=1)  # a prepared folder is read whole: max_bytes has no say
    assert all(isinstance(p, np.memmap) for p in shards.train.parts)
    assert shards.spec["fingerprint"] == raw.spec["fingerprint"] == meta["fingerprint"]
    assert {k: v for k, v in shards.spec.items() if k != "format"} == {k: v for k, v in raw.spec.items()
                                                                       if k != "format"}
    # the same windows in the same order, those across two shards included
    a, b = WindowStream(raw, 50, 8, seed=3), WindowStream(shards, 50, 8, seed=3)
    for _ in range(20):
        assert torch.equal(a.next()[0], b.next()[0])
    assert all(torch.equal(u, v) for u, v in zip(held_out_windows(raw, 50, 7), held_out_windows(shards, 50, 7)))
    assert load_tokenizer(out).sha256 == bpe.sha256


def test_byte_corpus_shards_and_their_tokenizer(tmp_path):
    folder = write_folder(tmp_path / "texts", docs(120))
    prepare(str(folder), tmp_path / "shards", byte_tokenizer(), progress=False)
    meta, train, _ = read_shards(tmp_path / "shards")
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["kind"] == "bytes"
    assert load_tokenizer(tmp_path / "shards").kind == "bytes"
    assert bytes(train.numpy().astype(np.uint8)).startswith(document(0).encode() + b"\n\n" + document(1).encode())


def test_shard_errors_name_the_file(tmp_path, bpe):
    source = str(write_jsonl(tmp_path / "c.jsonl", docs(200)))
    out = tmp_path / "shards"
    prepare(source, out, bpe, shard_tokens=2000, progress=False)
    with pytest.raises(DataError, match=bpe.sha256) as e:
        open_corpus(str(out), byte_tokenizer())
    assert byte_tokenizer().sha256 in str(e.value)
    with (out / "train-00001.bin").open("r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match=r"train-00001\.bin: 100 bytes, but meta.json says 2000 uint16"):
        open_corpus(str(out), bpe)
    (out / "meta.json").unlink()
    with pytest.raises(DataError, match=r"meta\.json: missing"):
        open_corpus(str(out), bpe)
    with pytest.raises(DataError, match="not an empty folder"):
        prepare(source, out, bpe, progress=False)


def test_a_failed_prepare_leaves_nothing(tmp_path, bpe):
    path = tmp_path / "c.jsonl"
    path.write_text(write_jsonl(tmp_path / "ok.jsonl", docs(100)).read_text() + "{oops\n")
    with pytest.raises(DataError, match=r"line 101"):
        prepare(str(path), tmp_path / "out", bpe, shard_tokens=500, progress=False)
    assert not (tmp_path / "out").exists()


def test_verify_finds_a_changed_shard(tmp_path, bpe):
    out = tmp_path / "shards"
    prepare(str(write_jsonl(tmp_path / "c.jsonl", docs(200))), out, bpe, progress=False)
    data = bytearray((out / "held-out.bin").read_bytes())
    data[0] ^= 1
    (out / "held-out.bin").write_bytes(bytes(data))
    open_corpus(str(out), bpe)  # sizes only, by default
    with pytest.raises(DataError, match=r"held-out\.bin: its content"):
        open_corpus(str(out), bpe, verify=True)


# the spec


def test_spec_names_the_content_not_the_path(tmp_path):
    texts = docs(150)
    one, two = write_folder(tmp_path / "one", texts), write_folder(tmp_path / "two", texts)
    spec_one = open_corpus(str(one), byte_tokenizer()).spec
    assert spec_one == open_corpus(str(two), byte_tokenizer()).spec
    assert str(tmp_path) not in json.dumps(spec_one) and "one" not in json.dumps(spec_one)
    assert set(spec_one) == {"format", "fingerprint", "train_tokens", "held_out_tokens", "tokenizer"}
    changed = (two / "0077.txt").read_bytes().replace(b"doc", b"dod", 1)
    (two / "0077.txt").write_bytes(changed)
    assert open_corpus(str(two), byte_tokenizer()).spec["fingerprint"] != spec_one["fingerprint"]


def test_the_tokenizer_is_part_of_the_fingerprint(tmp_path, bpe):
    path = str(write_jsonl(tmp_path / "c.jsonl", docs(100)))
    assert open_corpus(path, bpe).spec["fingerprint"] != open_corpus(path, byte_tokenizer()).spec["fingerprint"]


# the held-out split


def test_held_out_is_the_same_on_every_open_and_never_trained_on(tmp_path):
    path = str(write_jsonl(tmp_path / "c.jsonl", docs(300)))
    a, b = open_corpus(path, byte_tokenizer()), open_corpus(path, byte_tokenizer())
    assert np.array_equal(a.held_out.numpy(), b.held_out.numpy())
    held = bytes(a.held_out.numpy()).decode()
    train = bytes(a.train.numpy()).decode()
    for i in range(300):
        marker = f"doc{i:05d}:"
        assert (marker in held) == (i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1)
        assert (marker in train) != (marker in held)
    assert not any(t.startswith(("doc00049", "doc00099")) for t in documents_for_tokenizer(path))


def test_max_bytes_cuts_every_node_at_the_same_byte(tmp_path):
    path = str(write_jsonl(tmp_path / "c.jsonl", ["é" * 3000] * 5))
    texts = list(read_documents(path, max_bytes=7001))
    # 3 documents of 6000 bytes; the third cut to 1000 bytes (an "é" is two bytes: not cut in half)
    assert [len(t.encode()) for t in texts] == [6000, 1000]
    corpus = open_corpus(path, byte_tokenizer(), max_bytes=7001)
    # two documents and their separators; too few to hold out every 50th: the last tenth is cut off (a third piece)
    assert len(corpus.train) + len(corpus.held_out) == 7000 + 3 * 2


# errors that name the culprit


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": "fine"\n')
    with pytest.raises(DataError, match=rf"{path}, line 3: not a JSON object"):
        list(read_documents(str(path)))
    path.write_text('{"text": "fine", "content": "x"}\n{"content": "y"}\n')
    with pytest.raises(DataError, match=rf"{path}, line 2: no field 'text'"):
        list(read_documents(str(path)))
    assert list(read_documents(str(path), field="content")) == ["x", "y"]
    path.write_text('{"text": 3}\n')
    with pytest.raises(DataError, match=r"line 1: field 'text' is a int"):
        list(read_documents(str(path)))


def test_parquet_errors_name_file_and_columns(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", docs(3), column="body")
    with pytest.raises(DataError, match=rf"{path}: no column 'text'; its columns are \['body', 'id'\]"):
        list(read_documents(str(path)))
    assert len(list(read_documents(str(path), field="body"))) == 3
    with pytest.raises(DataError, match=r"column 'id' holds int64"):
        list(read_documents(str(path), field="id"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: not a readable Parquet file"):
        list(read_documents(str(tmp_path / "junk.parquet")))


def test_missing_data_and_tokenizer_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data .*nowhere: no such file"):
        open_corpus(str(tmp_path / "nowhere"), byte_tokenizer())
    with pytest.raises(FileNotFoundError, match=r"tokenizer .*none\.json: no such file"):
        load_tokenizer(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"model": 3}')
    with pytest.raises(ValueError, match=r"tokenizer .*bad\.json: not a Hugging Face tokenizer\.json"):
        load_tokenizer(tmp_path / "bad.json")


# the window stream


def test_two_seeds_read_disjoint_windows(tmp_path):
    corpus = open_corpus(str(write_jsonl(tmp_path / "c.jsonl", docs(1000))), byte_tokenizer())
    a = WindowStream(corpus, 16, 4, seed=node_seed(0, b"peer-a"))
    b = WindowStream(corpus, 16, 4, seed=a.start + a.windows // 2)
    assert a.windows > 2 * 50 * 4
    seen_a = {bytes(w.numpy().astype(np.uint8)) for batch in first_batches(a, 50) for w in batch}
    seen_b = {bytes(w.numpy().astype(np.uint8)) for batch in first_batches(b, 50) for w in batch}
    assert len(seen_a) == len(seen_b) == 200 and not seen_a & seen_b
    # and a whole walk visits every window once
    assert sorted(a.window_index(p) for p in range(a.windows)) == list(range(a.windows))


def test_a_restored_stream_continues_where_it_was(tmp_path):
    corpus = open_corpus(str(write_jsonl(tmp_path / "c.jsonl", docs(300))), byte_tokenizer())
    a = WindowStream(corpus, 32, 6, seed=99)
    first_batches(a, 7)
    position = a.position
    assert position == 42
    expected = first_batches(a, 5)
    b = WindowStream(corpus, 32, 6, seed=99)
    b.restore(position)
    assert all(torch.equal(u, v) for u, v in zip(expected, first_batches(b, 5)))


def test_too_short_a_corpus_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("x" * 100)
    corpus = open_corpus(str(path), byte_tokenizer())
    with pytest.raises(DataError, match=r"shorter than one window of context\+1 = 129 tokens"):
        WindowStream(corpus, 128, 2, seed=0)
    x, y = held_out_windows(corpus, 64, 3)  # evaluation repeats what there is
    assert x.shape == (3, 64) and torch.equal(x[:, 1:], y[:, :-1])


# tokenizers


def test_byte_tokenizer_json_maps_every_byte_to_itself():
    text = "".join(map(chr, range(1, 0x250))) + " \x00 tabs\t, é, 漢字, 🙂 \r\n"
    hf = tokenizers.Tokenizer.from_str(byte_tokenizer().to_json())
    ids = hf.encode(text).ids
    assert ids == list(text.encode("utf-8")) == byte_tokenizer().encode(text)
    assert hf.decode(ids) == text == byte_tokenizer().decode(ids)
    assert hf.get_vocab_size() == 256
    back = Tokenizer.from_json(byte_tokenizer().to_json())
    assert back.kind == "bytes" and back.sha256 == byte_tokenizer().sha256 and back.eos_id is None


def test_bpe_round_trips_and_reloads(tmp_path, bpe):
    text = docs(1)[0] + " unseen: 漢字 🙂"
    assert bpe.decode(bpe.encode(text)) == text
    assert bpe.encode_batch([text, "beta"]) == [bpe.encode(text), bpe.encode("beta")]
    assert bpe.eos_id == 0 and bpe.vocab_size == 380
    (tmp_path / "tokenizer.json").write_text(bpe.to_json())
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.kind == "bpe" and again.sha256 == bpe.sha256


BPE_SCRIPT = textwrap.dedent("""
    import sys
    from demo_node.data.tokens import documents_for_tokenizer
    from demo_node.data.tokenizer import train_bpe
    print(train_bpe(documents_for_tokenizer(sys.argv[1]), 600).sha256)
""")


def test_bpe_training_is_deterministic_across_processes_and_threads(tmp_path, bpe):
    # made-up words of few letters, so that many pairs tie: the order of ties is what could differ
    rng = random.Random(5)
    texts = [" ".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 7))) for _ in range(300))
             for _ in range(100)]
    path = str(write_jsonl(tmp_path / "c.jsonl", texts))
    hashes = set()
    for env in ({"RAYON_NUM_THREADS": "1"}, {"RAYON_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "true"},
                {"TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "123"}):
        out = subprocess.run([sys.executable, "-c", BPE_SCRIPT, path], env={**os.environ, **env}, check=True,
                             capture_output=True, text=True, timeout=60)
        hashes.add(out.stdout.strip())
    hashes.add(train_bpe(documents_for_tokenizer(path), 600).sha256)
    assert len(hashes) == 1
    other = train_bpe(documents_for_tokenizer(path), 601)
    assert other.vocab_size == 601 and other.sha256 not in hashes


def test_a_copied_corpus_folder_is_the_same_corpus(tmp_path, bpe):
    source = str(write_jsonl(tmp_path / "c.jsonl", docs(150)))
    prepare(source, tmp_path / "a", bpe, shard_tokens=1000, progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert open_corpus(str(tmp_path / "a"), bpe).spec == open_corpus(str(tmp_path / "b"), bpe).spec
