"""Every benchmark section in one run, with the settings for a full and a quick run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from onegen_evaluation.minilm import MiniLMEncoder

from benchmarks.decode import measure_decode
from benchmarks.frequency import measure_frequency
from benchmarks.indexing import measure_indexing
from benchmarks.multiturn import measure_multiturn
from benchmarks.overhead import measure_overhead
from benchmarks.plots import write_plots
from benchmarks.timing import peak_rss_mib, ratio
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
    index_doc_tokens: int = 160
    """Mean length of an indexed document (SQuAD paragraphs: about 150-200 tokens)."""
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
    index_doc_tokens=16,
    batch_size=4,
    decode_tokens=8,
)


def machine(models: Mapping[str, OneGenModel]) -> dict[str, Any]:
    """What the numbers were measured on."""
    threads = torch.get_num_threads()
    cores = os.cpu_count()
    versions = {"torch": torch.__version__}
    if "llama.cpp" in models:
        versions["llama-cpp-python"] = importlib.metadata.version("llama-cpp-python")
        versions["gguf"] = models["llama.cpp"].backend.path.name
    return {
        "cpu_cores": cores,
        "torch_threads": threads,
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "versions": versions,
        "batch": 1,
        "summary": f"{cores} CPU cores, {threads} thread(s); torch fp32"
        + (f", llama.cpp {models['llama.cpp'].backend.path.name}" if "llama.cpp" in models else ""),
    }


def run_benchmarks(
    models: Mapping[str, OneGenModel] | OneGenModel,
    settings: BenchSettings,
    out_dir: Path,
    encoder: MiniLMEncoder | None = None,
) -> dict[str, Any]:
    """Run every section on each backend's model (one section at a time, backends side by side),
    write `results.json` and the plots to `out_dir`, return the results."""
    started = time.perf_counter()
    if isinstance(models, OneGenModel):
        models = {models.backend.name: models}
    encoder = encoder or MiniLMEncoder()
    s = settings
    first = next(iter(models.values()))
    results: dict[str, Any] = {
        "machine": machine(models),
        "model": first.name,
        "settings": asdict(s),
        "backends": {name: {} for name in models},
    }
    sections: dict[str, Callable[[OneGenModel], dict[str, Any]]] = {
        "decode": lambda model: measure_decode(model, new_tokens=s.decode_tokens, repeats=s.decode_repeats),
        "overhead": lambda model: measure_overhead(
            model,
            encoder,
            query_tokens=s.query_tokens,
            passage_tokens=s.passage_tokens,
            new_tokens=s.new_tokens,
            repeats=s.repeats,
        ),
        "frequency": lambda model: measure_frequency(
            model, encoder, retrievals=s.retrievals, new_tokens=s.frequency_tokens, repeats=s.frequency_repeats
        ),
        "multiturn": lambda model: measure_multiturn(
            model,
            encoder,
            turns=s.turns,
            new_tokens=s.new_tokens,
            doc_tokens=s.passage_tokens,
            repeats=s.multiturn_repeats,
        ),
        "indexing": lambda model: measure_indexing(
            model, encoder, docs=s.docs, doc_tokens=s.index_doc_tokens, batch_size=s.batch_size, repeats=s.repeats
        ),
    }
    for name, measure in sections.items():
        for backend, model in models.items():
            section_start = time.perf_counter()
            print(f"[bench] {name} on {backend} ...", file=sys.stderr, flush=True)
            result = measure(model)
            result["section_seconds"] = round(time.perf_counter() - section_start, 1)
            results["backends"][backend][name] = result
    if {"torch", "llama.cpp"} <= set(models):
        results["comparison"] = compare(results["backends"]["torch"], results["backends"]["llama.cpp"])
    results["peak_rss_mib"] = peak_rss_mib()
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_plots(results, out_dir)
    return results


def compare(torch_results: dict[str, Any], llama: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios of llama.cpp against torch (above 1: llama.cpp is faster)."""
    decode_t, decode_l = torch_results["decode"]["tokens_per_s"], llama["decode"]["tokens_per_s"]
    index_t, index_l = torch_results["indexing"]["docs_per_s"], llama["indexing"]["docs_per_s"]
    chat_t, chat_l = torch_results["multiturn"]["total_seconds"], llama["multiturn"]["total_seconds"]
    return {
        "decode_engine_speedup": ratio(decode_l["engine"], decode_t["engine"]),
        "decode_engine_vs_raw_llama_cpp": ratio(decode_l["engine"], decode_l["raw"]),
        "one_pass_vs_lower_bound": {
            "torch": torch_results["overhead"]["ratio_to_lower_bound"]["one_pass"],
            "llama.cpp": llama["overhead"]["ratio_to_lower_bound"]["one_pass"],
        },
        "indexing_docs_per_s": {"torch": index_t["onegen_into_chroma"], "llama.cpp": index_l["onegen_into_chroma"]},
        "indexing_speedup": ratio(index_l["onegen_into_chroma"], index_t["onegen_into_chroma"]),
        "chat_total_speedup_over_torch_engine": ratio(chat_t["onegen"], chat_l["onegen"]),
        "chat_total_ratio_of_peers_on_llama_cpp": llama["multiturn"]["total_ratio_to_onegen"],
    }
