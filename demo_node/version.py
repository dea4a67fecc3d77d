"""The version of demo-node (its own module, so that any layer can name it without importing the package)."""

__version__ = "0.2.0"
