"""What a standalone benchmark writes: the host it ran on, and its results file."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def host(*packages: str) -> dict[str, Any]:
    """The CPUs this process may use, the processor, Python, and the versions of `packages`."""
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        **{name: importlib.metadata.version(name) for name in packages},
    }


def write_results(results: dict[str, Any], out: Path, name: str, table: str) -> None:
    """Write `results` as `out/name`, print `table`, and say on stderr where the file went."""
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(results, indent=2) + "\n")
    print(table)
    print(f"wrote {out / name} in {results['wall_seconds']} s", file=sys.stderr)
