"""``python -m demo_node`` is the ``demo-node`` command."""

import sys

from demo_node.cli import main

sys.exit(main())
