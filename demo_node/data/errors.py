"""The one error the data layer raises for data it cannot use; its message names the file (and line or column)."""

from demo_node.errors import DemoNodeError


class DataError(DemoNodeError, ValueError):
    """A corpus, shard folder or tokenizer that cannot be read as asked: the message says which and why."""
