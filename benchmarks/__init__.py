"""The project's benchmarks, outside the product package: ``python -m benchmarks <name>`` from a checkout (``--help``
lists them). Each prints ratios measured side by side in one run, as a table and as JSON.

They start workers as ``python -m benchmarks.<worker>``; so that a worker finds this package whatever folder it runs
in (a node's own folder, a network namespace), importing it puts the checkout on the children's ``PYTHONPATH``.
"""

import os
from pathlib import Path

CHECKOUT = str(Path(__file__).resolve().parents[1])
if CHECKOUT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", ""), CHECKOUT]))
