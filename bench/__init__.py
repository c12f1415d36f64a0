"""Benchmarks: `python -m bench [suite]`. Never run by `make test`."""
