"""Benchmarks: measured side by side in one run, printed as JSON and a table; they assert nothing."""
