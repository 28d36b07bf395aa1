"""`python -m benchmarks [--quick] [--model default] [--backends torch,llama.cpp] [--out benchmarks/results] [--threads 1]`."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from benchmarks.memory import measure_memory
from benchmarks.suite import FULL, QUICK, run_benchmarks
from onegen_integrations.backends.selection import llama_cpp_installed
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning

HEADLINE_KEYS = ("tokens_per_s", "docs_per_s", "total_seconds", "engine_vs_raw_time_per_token")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the model on each backend, run every section, print the headline numbers."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--model", default="default", help="'default' or a OneGen model directory")
    parser.add_argument(
        "--backends",
        default="torch,llama.cpp" if llama_cpp_installed() else "torch",
        help="comma-separated backends, each measured in every section (default: torch and llama.cpp when installed)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not numbers to quote")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where results.json and PNGs go")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of either backend (default 1: on a CPU shared with other jobs, more threads wait on each other)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        models = {b: OneGenModel.load(args.model, backend=b, threads=args.threads) for b in backends}
    results = run_benchmarks(models, QUICK if args.quick else FULL, args.out)
    if not args.quick:
        results["memory"] = {b: measure_memory(args.model, b, args.threads) for b in backends}
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    headline = {
        backend: {
            section: {k: v for k, v in r.items() if "ratio" in k or k in HEADLINE_KEYS} for section, r in sections.items()
        }
        for backend, sections in results["backends"].items()
    }
    print(json.dumps({**headline, "comparison": results.get("comparison"), "memory": results.get("memory")}, indent=2))
    print(f"wrote {args.out / 'results.json'} and plots in {results['wall_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
