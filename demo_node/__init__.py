"""demo-node: volunteer nodes that train one model together with the DeMo optimizer."""

__version__ = "0.1.0"
