"""An `EmbeddingWorker` the Ray tests watch: it logs what it embeds, and dies or fails on request.

Ray workers import it by name (`tests.ray_workers`), so it lives outside the test module.
Both files sit in the folder the environment variable `WORKER_DIR` names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from onegen_integrations.ray_indexing import EmbeddingWorker

WORKER_DIR = "ONEGEN_TEST_RAY_WORKER_DIR"
LOG = "embedded.log"
"""One line per batch embedded: its ids, separated by spaces."""
DIE = "die-after"
"""Holds N: the first worker called once N batches are logged deletes this file and exits."""
FAIL = "fail"
"""While it exists, every call raises a `RuntimeError` with its text."""


class ObservedWorker(EmbeddingWorker):
    """Embeds like `EmbeddingWorker`; logs each batch; exits the process or raises when told to."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        folder = Path(os.environ[WORKER_DIR])
        if _told_to_die(folder):
            os._exit(1)  # as a lost node or an out-of-memory kill would: no exception, no cleanup
        if (folder / FAIL).exists():
            raise RuntimeError((folder / FAIL).read_text())
        embedded = super().__call__(batch)
        with (folder / LOG).open("a") as log:
            log.write(" ".join(embedded["id"]) + "\n")
        return embedded


def _told_to_die(folder: Path) -> bool:
    """Whether the order is due; deleting it claims it, so one worker dies once."""
    try:
        due = len(logged(folder)) >= int((folder / DIE).read_text())
        if due:
            (folder / DIE).unlink()
        return due
    except FileNotFoundError:  # no order, or another worker claimed it
        return False


def logged(folder: Path) -> list[list[str]]:
    """The batches embedded so far, each as its ids."""
    path = folder / LOG
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []
