"""What a node tells its operator: one line per event, readable text on a terminal, JSON lines otherwise, or
records of the ``demo_node.events`` logger (the Python API's default).

Every line carries the run id, the round and the peer id, the library log lines (stderr) included. On a terminal the
round line is a live line, rewritten in place. ``demo-node swarm`` reads the JSON lines of its nodes. JSON lines are
strict JSON: a figure that is not finite (a loss before the first evaluation) is written as null.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from typing import Any, Callable, TextIO

FORMATS = ("auto", "text", "json", "log")
events_log = logging.getLogger("demo_node.events")


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}TB"


def jsonable(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class Reporter:
    FORMATS = FORMATS
    """auto (text on a terminal, else JSON lines), text, json, or log (records of the demo_node.events logger)."""

    def __init__(self, fmt: str = "auto", stream: TextIO | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
        self.stream = stream or sys.stdout
        self.to_log = fmt == "log"
        self.json = fmt == "json" or (fmt == "auto" and not self.stream.isatty())
        self.live = not self.json and not self.to_log and self.stream.isatty()
        self.run_id, self.peer = "", ""
        self._round_of: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()
        self._live_line = ""

    def bind(self, run_id: str, peer: str, round_of: Callable[[], int]) -> None:
        """Tag every line from now on with this run, this peer, and the round ``round_of()`` says."""
        self.run_id, self.peer, self._round_of = run_id, peer, round_of

    @property
    def round(self) -> int:
        return self._round_of()

    def event(self, kind: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": kind, "run_id": self.run_id, "peer": self.peer,
                  "round": fields.pop("round", self.round), **fields}
        if self.to_log:
            events_log.info("%s", self._text(jsonable(record)))
            return
        with self._lock:
            if self.json:
                self.stream.write(json.dumps(jsonable(record), default=str, allow_nan=False) + "\n")
            elif self.live and kind == "round":
                self._live_line = self._text(record)
                self.stream.write("\r\x1b[K" + self._live_line)
            elif self.live:
                self.stream.write("\r\x1b[K" + self._text(record) + "\n" + self._live_line)
            else:
                self.stream.write(self._text(record) + "\n")
            self.stream.flush()

    @staticmethod
    def _text(r: dict) -> str:
        head = f"{time.strftime('%H:%M:%S', time.localtime(r['ts']))} {r['run_id']} r{r['round']} {r['peer'][-8:]}"
        if r["event"] == "round":
            loss = "-" if r.get("loss") is None else f"{r['loss']:.3f}"
            return (f"{head} loss {loss} {r.get('tokens_per_s') or 0:.0f} tok/s members {r['members']} "
                    f"round {r['round_seconds']:.2f}s sent {_human(r['bytes_sent'])} recv {_human(r['bytes_received'])}"
                    f"{' (contribution left out)' if r.get('left_out') else ''}")
        rest = " ".join(f"{k}={v}" for k, v in r.items() if k not in ("ts", "event", "run_id", "round", "peer"))
        return f"{head} {r['event']} {rest}"


class _Context(logging.Filter):
    def __init__(self, reporter: Reporter):
        super().__init__()
        self.reporter = reporter

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id, record.round, record.peer = self.reporter.run_id, self.reporter.round, self.reporter.peer
        return True


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "run_id": record.run_id, "round": record.round, "peer": record.peer, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(reporter: Reporter, level: int = logging.WARNING) -> None:
    """Library logs to stderr, each line tagged with the run id, round and peer id (JSON lines in JSON mode)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context(reporter))
    if reporter.json:
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(run_id)s r%(round)s %(peer)s %(name)s: "
                                               "%(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
