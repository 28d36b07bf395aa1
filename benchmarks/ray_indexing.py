"""Indexing on Ray workers against one process, in one run: documents/s of `index_paths_on_ray`
with 1 and 2 workers and of `index_paths` (`store.add` in this process) on the same paragraphs.

The paragraphs are the indexing section's (SQuAD's lengths: `doc_tokens` on average, from half
to one and a half times it), written as one .jsonl file, each run into a new collection. Ray
starts once, before the timings; the runs are interleaved, medians reported. Every Ray run
includes starting its workers, each loading the model: a run over one paragraph measures that
fixed cost, and the rate after it is estimated as (docs - 1) / (full run - one-paragraph run). The CPUs are shared: one process gets them all
as threads; with Ray they are split between the workers, and the driver still writes to Chroma.

    python -m benchmarks.ray_indexing                            # 96 paragraphs, the default model on torch
    python -m benchmarks.ray_indexing --docs 8 --out /tmp/bench  # a smoke run, numbers not to quote
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import ray
import torch
from chromadb.config import Settings

from benchmarks.indexing import paragraphs
from benchmarks.report import host, write_results
from benchmarks.timing import interleaved_medians, ratio
from onegen_integrations.ingest import IndexReport, index_paths
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from onegen_integrations.ray_indexing import RayOptions, index_paths_on_ray
from onegen_integrations.store import ChromaDocumentStore

BATCH_SIZE = 16
"""Documents per forward pass in one process; a Ray batch holds the tokens of this many full chunks."""
CHUNK_TOKENS = 256
WORKER_COUNTS = (1, 2)


def measure_ray_indexing(
    model: OneGenModel, *, docs: int, doc_tokens: int, cpus: int, repeats: int, folder: Path
) -> dict[str, Any]:
    """Median seconds and documents/s of one process and of each Ray worker count, every run into
    a new collection, the runs interleaved (noise hits each alike) after an untimed round of
    one-paragraph runs (Ray's worker processes and the allocator warm up)."""
    texts = paragraphs(model, doc_tokens, docs)
    corpus = _write_corpus(folder / "corpus.jsonl", texts)
    one_paragraph = _write_corpus(folder / "one.jsonl", texts[:1])
    client = chromadb.PersistentClient(path=str(folder / "db"), settings=Settings(anonymized_telemetry=False))
    collections = iter(range(1_000_000))

    def into_new_collection(index: Callable[[ChromaDocumentStore], IndexReport]) -> Callable[[], None]:
        def run() -> None:
            report = index(ChromaDocumentStore(model, client=client, collection=f"run-{next(collections)}"))
            if report.added != report.documents:
                raise RuntimeError(f"expected a run into a new collection, got: {report.summary()}")

        return run

    variants = {
        "one_process": into_new_collection(
            lambda store: index_paths(store, [corpus], batch_size=BATCH_SIZE, show_progress=False)
        )
    }
    for workers in WORKER_COUNTS:
        options = RayOptions(
            workers=workers, cpus_per_worker=cpus / workers, batch_tokens=BATCH_SIZE * CHUNK_TOKENS, backend="torch"
        )
        for name, paths in ((f"ray_{workers}", [corpus]), (f"ray_{workers}_one_paragraph", [one_paragraph])):
            variants[name] = into_new_collection(
                lambda store, paths=paths, options=options: index_paths_on_ray(store, paths, options, show_progress=False)
            )
    model.embed_documents(texts[:BATCH_SIZE], batch_size=BATCH_SIZE)  # the untimed round
    for name, run in variants.items():
        if name.endswith("_one_paragraph"):
            run()
    seconds = interleaved_medians(variants, repeats, warmup=0)
    one_process = docs / seconds["one_process"]
    runs: dict[str, Any] = {"one_process": {"threads": torch.get_num_threads(), **_rate(seconds["one_process"], docs)}}
    for workers in WORKER_COUNTS:
        full, start = seconds[f"ray_{workers}"], seconds[f"ray_{workers}_one_paragraph"]
        after_start = (docs - 1) / max(full - start, 1e-9)
        runs[f"ray_{workers}_worker{'s' * (workers > 1)}"] = {
            "threads_per_worker": max(1, int(cpus / workers)),
            **_rate(full, docs),
            "one_paragraph_seconds": round(start, 2),
            "docs_per_s_after_start": round(after_start, 2),
            "vs_one_process": ratio(docs / full, one_process),
            "vs_one_process_after_start": ratio(after_start, one_process),
        }
    tokens = sum(model.count_tokens(text) for text in texts)
    return {
        "docs": docs,
        "tokens_per_doc": round(tokens / docs, 1),
        "batch_size": BATCH_SIZE,
        "repeats": repeats,
        "runs": runs,
    }


def _rate(seconds: float, docs: int) -> dict[str, float]:
    return {"seconds": round(seconds, 2), "docs_per_s": round(docs / seconds, 2)}


def _write_corpus(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "text": text}) + "\n" for i, text in enumerate(texts)))
    return path


def table(measured: dict[str, Any]) -> str:
    """The runs as a Markdown table: seconds, documents/s, and the ratio to one process."""
    lines = [
        "| run | seconds | docs/s | vs one process | docs/s after workers start | vs one process |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in measured["runs"].items():
        after = run.get("docs_per_s_after_start", run["docs_per_s"])
        lines.append(
            f"| {name} | {run['seconds']} | {run['docs_per_s']} | {run.get('vs_one_process', 1.0)} | {after} "
            f"| {run.get('vs_one_process_after_start', 1.0)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Load the model, start Ray, time every run; print a table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_indexing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default' or a OneGen model directory (on torch)")
    parser.add_argument("--docs", type=int, default=96, help="paragraphs to index (default 96)")
    parser.add_argument("--doc-tokens", type=int, default=165, help="their mean length in tokens (default 165)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; medians are reported (default 3)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where ray_indexing.json goes")
    args = parser.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    torch.set_num_threads(cpus)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        model = OneGenModel.load(args.model, backend="torch")
    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - started
    try:
        with tempfile.TemporaryDirectory() as folder:
            measured = measure_ray_indexing(
                model, docs=args.docs, doc_tokens=args.doc_tokens, cpus=cpus, repeats=args.repeats, folder=Path(folder)
            )
    finally:
        ray.shutdown()
    results = {
        "model": args.model,
        "backend": "torch",
        **measured,
        "ray_start_seconds": round(ray_start, 2),
        "gpu": "not measured (no GPU)" if not torch.cuda.is_available() else "not measured",
        "machine": host("torch", "ray", "chromadb"),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_results(results, args.out, "ray_indexing.json", table(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
