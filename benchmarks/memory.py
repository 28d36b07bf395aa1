"""Peak memory per backend: a fresh process loads the model, indexes the demo corpus into an
embedded Chroma and holds the three-turn demo conversation; its peak RSS is the figure.

    python -m benchmarks.memory --backend llama.cpp    # prints {"backend": ..., "peak_rss_mib": ...}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM). Unlike `getrusage`, it is not inherited from
    the parent across fork and exec, so a child measures itself alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure_memory(model_name: str, backend: str, threads: int) -> dict[str, float]:
    """Run this module in a new process for `backend`; its JSON line as a dict."""
    command = [sys.executable, "-m", "benchmarks.memory", "--model", model_name, "--backend", backend,
               "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Load, index, chat; print the peak RSS after loading and at the end as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", choices=("torch", "llama.cpp"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from onegen_integrations.ingest import demo_conversation, index_demo
    from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
    from onegen_integrations.store import ChromaDocumentStore

    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        model = OneGenModel.load(args.model, backend=args.backend, threads=args.threads)
    loaded = peak_mib()
    with tempfile.TemporaryDirectory() as db:
        store = ChromaDocumentStore(model, path=db, collection="memory")
        index_demo(store)
        session = model.session(store)
        for message in demo_conversation():
            session.ask(message)
    print(json.dumps({"backend": args.backend, "after_load_mib": loaded, "peak_rss_mib": peak_mib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
