"""One PNG per benchmark section, drawn from the results dictionary alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def lines(ax: Axes, x: list[float], series: dict[str, list[float]], xlabel: str, ylabel: str) -> None:
    """One marked line per named series over `x`."""
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def bars(ax: Axes, values: dict[str, float], ylabel: str) -> None:
    """One labelled bar per named value."""
    ax.bar(list(values), list(values.values()))
    ax.set_ylabel(ylabel)
    for i, value in enumerate(values.values()):
        ax.annotate(f"{value:g}", (i, value), ha="center", va="bottom")
    ax.tick_params(axis="x", labelrotation=15)


def draw_overhead(r: dict[str, Any], fig: Figure) -> None:
    """Turn seconds per variant, and the extra milliseconds over the lower bound, against query length."""
    turn, extra = fig.subplots(1, 2)
    turn.set_title(f"Turn with one retrieval ({r['new_tokens']} new tokens)")
    lines(turn, r["query_tokens"], r["turn_seconds"], "query tokens", "seconds per turn (median)")
    extra.set_title("Cost over the passage-in-prompt lower bound")
    extra.set_prop_cycle(color=plt.rcParams["axes.prop_cycle"].by_key()["color"][1:])  # same colour per variant
    lines(extra, r["query_tokens"], r["overhead_ms"], "query tokens", "extra milliseconds per turn")


def draw_multiturn(r: dict[str, Any], fig: Figure) -> None:
    """Seconds of each turn of the conversation, one line per chat system."""
    ax = fig.subplots()
    ax.set_title(f"Multi-turn RAG chat ({r['new_tokens']} new tokens per LLM call)")
    lines(ax, list(range(1, r["turns"] + 1)), r["turn_seconds"], "turn", "seconds for this turn")


def draw_frequency(r: dict[str, Any], fig: Figure) -> None:
    """Output seconds against retrievals per output, one line per system."""
    ax = fig.subplots()
    ax.set_title(f"Retrievals inside one {r['new_tokens']}-token output (G→R)")
    lines(ax, r["retrievals"], r["output_seconds"], "retrievals in the output", "seconds per output (median)")


def draw_indexing(r: dict[str, Any], fig: Figure) -> None:
    """Documents/s of each indexer; on torch, achieved and peak FLOP/s in the title."""
    ax = fig.subplots()
    title = f"Embedding ~{r['tokens_per_doc']:g}-token documents, batch {r['batch_size']}"
    if "achieved_gflops" in r:
        title += (
            f"\nOneGen: {r['achieved_gflops']:g} GFLOP/s = {100 * r['fraction_of_peak']:.0f}% "
            f"of this CPU's fp32 matmul peak ({r['matmul_peak_gflops']:g})"
        )
    ax.set_title(title)
    bars(ax, r["docs_per_s"], "documents / s")


def draw_decode(r: dict[str, Any], fig: Figure) -> None:
    """Decode tokens/s of the engine and of its backend's raw generation loop."""
    ax = fig.subplots()
    ax.set_title("Decode speed, same weights, greedy, batch 1")
    speeds = r["tokens_per_s"]
    bars(ax, {"engine": speeds["engine"], r["raw"]: speeds["raw"]}, "tokens / s")


DRAWERS: dict[str, Callable[[dict[str, Any], Figure], None]] = {
    "overhead": draw_overhead,
    "multiturn": draw_multiturn,
    "frequency": draw_frequency,
    "indexing": draw_indexing,
    "decode": draw_decode,
}


def write_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """`<section>-<backend>.png` in `out_dir` for every section each backend ran; returns the paths."""
    paths = []
    for backend, sections in results["backends"].items():
        for section, draw in DRAWERS.items():
            if section not in sections:
                continue
            fig = plt.figure(figsize=(12 if section == "overhead" else 7, 4.5))
            draw(sections[section], fig)
            fig.suptitle(f"backend: {backend}", x=0.01, ha="left", fontsize=8, alpha=0.7)
            fig.text(0.99, 0.01, results["machine"]["summary"], ha="right", va="bottom", fontsize=7, alpha=0.7)
            fig.tight_layout()
            path = out_dir / f"{section}-{backend}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(path)
    return paths
