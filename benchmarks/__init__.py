"""Reproducible benchmarks: `python -m benchmarks <name> [--size N]` (see README.md)."""
