"""`python -m benchmarks [--quick] [--model default] [--out benchmarks/results] [--threads 1]`."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from benchmarks.suite import FULL, QUICK, run_benchmarks
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the model, run every section, print the headline numbers."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--model", default="default", help="'default' or a OneGen model directory")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not numbers to quote")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where results.json and PNGs go")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a CPU shared with other jobs, more threads wait on each other)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        model = OneGenModel.load(args.model)
    results = run_benchmarks(model, QUICK if args.quick else FULL, args.out)
    headline = {
        section: {k: v for k, v in results[section].items() if "ratio" in k or k in ("tokens_per_s", "docs_per_s")}
        for section in ("decode", "overhead", "frequency", "multiturn", "indexing")
    }
    print(json.dumps(headline, indent=2))
    print(f"wrote {args.out / 'results.json'} and plots in {results['wall_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
