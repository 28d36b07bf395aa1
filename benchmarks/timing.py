"""Wall-clock helpers: interleaved medians (background noise hits every variant alike) and memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Mapping


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(
    variants: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per variant over `repeats` rounds, each round running every variant once.

    `warmup` untimed rounds come first (allocator, caches, lazy imports).
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, repeats)):
        for name, fn in variants.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ratio(a: float, b: float) -> float:
    """`a / b` rounded for the report."""
    return round(a / b, 3)
