"""Every benchmark section in one run, with the settings for a full and a quick run."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.decode import measure_decode
from benchmarks.frequency import measure_frequency
from benchmarks.indexing import measure_indexing
from benchmarks.multiturn import measure_multiturn
from benchmarks.overhead import measure_overhead
from benchmarks.plots import write_plots
from benchmarks.timing import peak_rss_mib
from onegen_integrations.evaluation.minilm import MiniLMEncoder
from onegen_integrations.model import OneGenModel


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of every section; `FULL` is `make bench`, `QUICK` is `--quick` (and the test)."""

    repeats: int = 3
    """Timed rounds per measurement (medians); one untimed warm-up round comes first."""
    decode_repeats: int = 7
    """Timed rounds of the decode section (its ratio is a difference of timings: more rounds)."""
    new_tokens: int = 16
    """Tokens generated per turn in the overhead and multi-turn sections."""
    query_tokens: tuple[int, ...] = (16, 128, 512)
    """Query lengths of the overhead section."""
    passage_tokens: int = 64
    """Length of the inserted passage (and of each multi-turn document)."""
    turns: int = 20
    """Messages in the multi-turn conversation."""
    multiturn_repeats: int = 1
    """Conversations timed per chat system (per-turn medians)."""
    retrievals: tuple[int, ...] = (0, 2, 4, 8)
    """Retrieval counts of the frequency section."""
    frequency_tokens: int = 48
    """Answer tokens per output in the frequency section."""
    frequency_repeats: int = 3
    """Timed rounds per frequency measurement."""
    docs: int = 48
    """Documents embedded in the indexing section."""
    batch_size: int = 16
    """Documents per forward pass when indexing."""
    decode_tokens: int = 32
    """Tokens per decode measurement."""


FULL = BenchSettings()
QUICK = BenchSettings(
    repeats=1,
    decode_repeats=1,
    new_tokens=4,
    query_tokens=(8, 32),
    passage_tokens=16,
    turns=3,
    retrievals=(0, 2),
    frequency_tokens=8,
    frequency_repeats=1,
    docs=8,
    batch_size=4,
    decode_tokens=8,
)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    threads = torch.get_num_threads()
    cores = os.cpu_count()
    return {
        "cpu_cores": cores,
        "torch_threads": threads,
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "dtype": "float32",
        "device": "cpu",
        "batch": 1,
        "summary": f"{cores} CPU cores, {threads} torch thread(s), fp32, torch {torch.__version__}",
    }


def run_benchmarks(
    model: OneGenModel, settings: BenchSettings, out_dir: Path, encoder: MiniLMEncoder | None = None
) -> dict[str, Any]:
    """Run every section on `model`, write `results.json` and the plots to `out_dir`, return the results."""
    started = time.perf_counter()
    encoder = encoder or MiniLMEncoder()
    s = settings
    results: dict[str, Any] = {"machine": machine(), "model": model.name, "settings": asdict(s)}
    sections = {
        "decode": lambda: measure_decode(model, new_tokens=s.decode_tokens, repeats=s.decode_repeats),
        "overhead": lambda: measure_overhead(
            model,
            encoder,
            query_tokens=s.query_tokens,
            passage_tokens=s.passage_tokens,
            new_tokens=s.new_tokens,
            repeats=s.repeats,
        ),
        "frequency": lambda: measure_frequency(
            model, encoder, retrievals=s.retrievals, new_tokens=s.frequency_tokens, repeats=s.frequency_repeats
        ),
        "multiturn": lambda: measure_multiturn(
            model,
            encoder,
            turns=s.turns,
            new_tokens=s.new_tokens,
            doc_tokens=s.passage_tokens,
            repeats=s.multiturn_repeats,
        ),
        "indexing": lambda: measure_indexing(
            model, encoder, docs=s.docs, doc_tokens=s.passage_tokens, batch_size=s.batch_size, repeats=s.repeats
        ),
    }
    for name, measure in sections.items():
        section_start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        results[name] = measure()
        results[name]["section_seconds"] = round(time.perf_counter() - section_start, 1)
    results["peak_rss_mib"] = peak_rss_mib()
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_plots(results, out_dir)
    return results
