"""What a node tells its operator: one line per event, readable text on a terminal, JSON lines otherwise.

Every line carries the run id, the round and the peer id. ``demo-node swarm`` reads the JSON lines of its nodes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}TB"


class Reporter:
    def __init__(self, fmt: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.json = fmt == "json" or (fmt == "auto" and not self.stream.isatty())
        self.run_id, self.peer, self.round = "", "", 0
        self._lock = threading.Lock()

    def event(self, kind: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": kind, "run_id": self.run_id, "peer": self.peer,
                  "round": fields.pop("round", self.round), **fields}
        with self._lock:
            if self.json:
                self.stream.write(json.dumps(record, default=str) + "\n")
            else:
                self.stream.write(self._text(record) + "\n")
            self.stream.flush()

    @staticmethod
    def _text(r: dict) -> str:
        head = f"{time.strftime('%H:%M:%S', time.localtime(r['ts']))} {r['run_id']} r{r['round']} {r['peer'][-8:]}"
        if r["event"] == "round":
            return (f"{head} loss {r['loss']:.3f} {r['tokens_per_s']:.0f} tok/s members {r['members']} "
                    f"round {r['round_seconds']:.2f}s sent {_human(r['bytes_sent'])} recv {_human(r['bytes_received'])}"
                    f"{' (contribution left out)' if r.get('left_out') else ''}")
        rest = " ".join(f"{k}={v}" for k, v in r.items() if k not in ("ts", "event", "run_id", "round", "peer"))
        return f"{head} {r['event']} {rest}"
