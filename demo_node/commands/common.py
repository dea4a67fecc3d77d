"""What the ``demo-node`` commands share: exit codes, quiet libraries, and printing a result as text and JSON."""

from __future__ import annotations

import json
import logging
import os

EXIT_USAGE = 2
EXIT_START_FAILED = 3
EXIT_FORCED = 130


def quiet_libraries() -> None:
    os.environ.setdefault("HIVEMIND_LOGLEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def emit(result, text: str, json_path: str | None) -> None:
    """Print ``text``; write ``result`` as JSON to ``json_path`` too ('-': stdout)."""
    print(text)
    if json_path == "-":
        print(json.dumps(result, indent=2))
    elif json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nJSON written to {json_path}")
