"""Each method's held-out loss at each lr, averaged over every seed found in several `python -m benchmarks
convergence` JSON files.

Runs on different seeds (say seeds 0-2 one day, 3-5 the next) are separate result files; this pools them per
method and lr, from each sweep's per-seed losses and each method's runs at its chosen lr. Run:
``python benchmarks/pool_seeds.py a.json b.json ...``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def pool(paths: list[str]) -> dict[tuple[str, float], dict[int, float]]:
    """(method, lr) -> seed -> final held-out loss; a later file's figure for the same seed wins."""
    pooled: dict[tuple[str, float], dict[int, float]] = defaultdict(dict)
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        for name, method in result["methods"].items():
            for entry in method.get("sweep") or []:
                for seed, loss in zip(result["seeds"], entry["losses"]):
                    pooled[(name, entry["lr"])][seed] = loss
            for run in method.get("seed_runs") or []:  # a sweep of one lr keeps only the first seed's loss
                pooled[(name, method["lr"])][run["seed"]] = run["final_loss"]
    return pooled


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/pool_seeds.py RESULT.json [RESULT.json ...]")
    for (name, lr), by_seed in sorted(pool(sys.argv[1:]).items()):
        print(f"{name:10s} lr {lr:<7g} seeds {sorted(by_seed)}  mean {statistics.mean(by_seed.values()):.4f}")


if __name__ == "__main__":
    main()
