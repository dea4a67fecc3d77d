"""The data layer's fixed rules that the (torch-free) option definitions quote: how much text is read, what is
held out."""

HELD_OUT_EVERY = 50
"""Every 50th document (file, JSON line, Parquet row) is held out for evaluation."""
MAX_CORPUS_BYTES = 64 * 2**20
"""The most bytes of text read by default (the stdlib with its tests is about 40 MB: plenty for a small model)."""
