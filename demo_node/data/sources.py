"""The documents that ``--data`` names, in a fixed order, each marked train or held out by the same rule on every
node: "stdlib", a text file, a JSON-lines file, a Parquet file, or a folder of such files."""

from __future__ import annotations

import codecs
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from demo_node.data.errors import DataError
from demo_node.data.limits import HELD_OUT_EVERY, MAX_CORPUS_BYTES

MIN_TRAIN_BYTES = 4096
MIN_HELD_OUT_BYTES = 1024
"""Under either, the documents are too few for every 50th to be held out: the last tenth of the text is, instead."""
SHARD_MARKERS = ("meta.json", "held-out.bin", "train-00000.bin")
"""Any of these in a folder makes it a folder of token shards (checked, and refused when incomplete)."""


NOT_TEXT = {".bin", ".npy", ".npz", ".pt", ".safetensors", ".arrow", ".gz", ".zst", ".bz2", ".xz", ".zip", ".tar"}
"""Extensions of token arrays, tensors and archives: read as text they would be garbage, so they are refused."""


def file_format(path: Path) -> str:
    """"jsonl" (.jsonl, .json: JSON lines), "parquet" or "text", by the file's extension."""
    suffix = path.suffix.lower()
    if suffix in NOT_TEXT:
        raise DataError(f"--data: {path} is not text, JSON lines or Parquet ({suffix}): decompress it, or tokenize "
                        "a corpus into token shards with `demo-node data prepare`")
    return "jsonl" if suffix in (".jsonl", ".json") else "parquet" if suffix == ".parquet" else "text"


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in SHARD_MARKERS)


def source_format(source: str) -> str:
    """"stdlib", "text", "jsonl", "parquet", "tokens" (a folder of shards from ``prepare``), or "mixed" (a folder
    of files of several formats)."""
    if source == "stdlib":
        return "stdlib"
    if is_shard_folder(Path(source)):
        return "tokens"
    formats = {file_format(f) for f in files_of(source)}
    return formats.pop() if len(formats) == 1 else "mixed"


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))


def _user_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        # hidden files and folders (.git, .DS_Store) are no one's training text
        files = sorted(f for f in p.rglob("*")
                       if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if files:
            return files
    raise FileNotFoundError(f"--data {path}: no such file, or a folder without files")


def files_of(source: str) -> list[Path]:
    """The files of a source, in the order they are read."""
    return _stdlib_files() if source == "stdlib" else _user_files(source)


class _Budget:
    """Bytes of text still to read; the document that crosses the budget is cut at it (on a character)."""

    def __init__(self, max_bytes: int | None):
        self.left = float("inf") if max_bytes is None else max_bytes

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self, text: str) -> str:
        data = text.encode("utf-8")
        if len(data) > self.left:
            data = data[: int(self.left)]
            text = data.decode("utf-8", errors="ignore")  # drops a character cut in two
        self.left -= len(data)
        return text


def _text_documents(path: Path, budget: _Budget) -> Iterator[str]:
    limit = -1 if budget.left == float("inf") else int(budget.left)
    try:
        with path.open("rb") as f:
            data = f.read(limit)
    except OSError as e:
        raise DataError(f"--data {path}: cannot read it ({e.strerror or e})") from None
    # not final: a character cut by the budget is left out rather than replaced
    yield codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)


def _jsonl_documents(path: Path, field: str, budget: _Budget) -> Iterator[str]:
    try:
        f = path.open("rb")
    except OSError as e:
        raise DataError(f"--data {path}: cannot read it ({e.strerror or e})") from None
    with f:
        for number, line in enumerate(f, 1):
            if budget.spent:
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(f"--data {path}, line {number}: not a JSON object ({e})") from None
            if not isinstance(record, dict) or field not in record:
                raise DataError(f"--data {path}, line {number}: no field {field!r} (a JSON-lines corpus has the text "
                                f"of each document in it; --data-field names another)")
            text = record[field]
            if not isinstance(text, str):
                raise DataError(f"--data {path}, line {number}: field {field!r} is a {type(text).__name__}, "
                                f"not a string")
            yield text


def _parquet_documents(path: Path, field: str, budget: _Budget) -> Iterator[str]:
    import pyarrow as pa  # only a Parquet corpus needs it
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"--data {path}: not a readable Parquet file ({e})") from None
    schema = table.schema_arrow
    if field not in schema.names:
        raise DataError(f"--data {path}: no column {field!r}; its columns are {schema.names} (--data-field names "
                        f"the one with the text)")
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise DataError(f"--data {path}: column {field!r} holds {kind}, not strings")
    for batch in table.iter_batches(batch_size=1024, columns=[field]):
        for text in batch.column(0).to_pylist():
            if budget.spent:
                return
            if text is not None:
                yield text


def read_documents(source: str, max_bytes: int | None = MAX_CORPUS_BYTES, field: str = "text") -> Iterator[str]:
    """Every non-empty document of the source in order, until ``max_bytes`` bytes of UTF-8 text (None: all): a text
    file is one document, a JSON line's ``field`` or a Parquet row's ``field`` column is one."""
    if source != "stdlib" and is_shard_folder(Path(source)):
        raise DataError(f"--data {source}: a folder of token shards has no text documents left to read")
    budget = _Budget(max_bytes)
    for path in files_of(source):
        if budget.spent:
            return
        kind = file_format(path) if source != "stdlib" else "text"
        if kind == "jsonl":
            texts = _jsonl_documents(path, field, budget)
        elif kind == "parquet":
            texts = _parquet_documents(path, field, budget)
        else:
            texts = _text_documents(path, budget)
        for text in texts:
            text = budget.take(text)
            if text:
                yield text


def split_documents(source: str, max_bytes: int | None = MAX_CORPUS_BYTES,
                    field: str = "text") -> Iterator[tuple[bool, str]]:
    """(held_out, text) for each document in order: every HELD_OUT_EVERY-th is held out. A corpus too small for
    that (under MIN_TRAIN_BYTES of training text or MIN_HELD_OUT_BYTES held out) holds out its last tenth instead."""
    # documents wait here until both splits are big enough that the last-tenth rule can no longer apply
    pending: list[tuple[bool, str, int]] = []
    train_bytes = held_bytes = 0
    settled = False
    for i, text in enumerate(read_documents(source, max_bytes, field)):
        held = i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        if settled:
            yield held, text
            continue
        size = len(text.encode("utf-8"))
        pending.append((held, text, size))
        if held:
            held_bytes += size
        else:
            train_bytes += size
        if train_bytes >= MIN_TRAIN_BYTES and held_bytes >= MIN_HELD_OUT_BYTES:
            yield from ((h, t) for h, t, _ in pending)
            pending, settled = [], True
    if not settled:
        yield from _last_tenth(source, pending)


def _last_tenth(source: str, documents: list[tuple[bool, str, int]]) -> Iterator[tuple[bool, str]]:
    total = sum(size for _, _, size in documents)
    cut = total * 9 // 10
    if total - cut < 2 or cut == 0:
        raise DataError(f"--data {source}: too little text to train on ({total} bytes)")
    start = 0
    for _, text, size in documents:
        if start + size <= cut:
            yield False, text
        elif start >= cut:
            yield True, text
        else:
            head = text.encode("utf-8")[: cut - start].decode("utf-8", errors="ignore")
            if head:
                yield False, head
            yield True, text[len(head):]
        start += size
