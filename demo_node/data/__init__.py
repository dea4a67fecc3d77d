"""Training text: an embedded byte-level corpus present on every machine, or the user's own files."""
