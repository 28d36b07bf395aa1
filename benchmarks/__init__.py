"""Reproducible measurements of one-pass retrieval against the pipelines users would otherwise build.

`python -m benchmarks` (or `make bench`) runs every section on one machine, in one process,
and writes `benchmarks/results/results.json` and one PNG plot per section. See `suite.py`
for what is measured and `README.md` ("Benchmarks") for the numbers.
"""
