"""`onegen serve` in a process of its own over the demo corpus, for tests that talk to it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onegen_integrations.ingest import index_demo
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import ChromaDocumentStore
from tests.servers import OneGenServer

COLLECTION = "demo"
LIMITED_KEY = "test-key"
LIMITED_FLAGS = (
    "--max-conversations", "2", "--concurrency", "1", "--queue", "1", "--max-messages", "8",
    "--max-request-bytes", "20000", "--max-tokens", "64",
)  # fmt: skip
"""The `limited` server: tiny caps, so each limit is reached with a few requests."""


@pytest.fixture(scope="session")
def demo_db(default_model: OneGenModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding the demo corpus, embedded by the default model."""
    path = tmp_path_factory.mktemp("served-db")
    index_demo(ChromaDocumentStore(default_model, path=path, collection=COLLECTION))
    return path


@pytest.fixture(scope="module")
def server(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneGenServer]:
    """`onegen serve` on the default model with its default limits and no API key."""
    served = OneGenServer(demo_db, COLLECTION, log=tmp_path_factory.mktemp("serve") / "server.log")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def limited(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneGenServer]:
    """`onegen serve` with `LIMITED_FLAGS` and the API key `LIMITED_KEY`."""
    log = tmp_path_factory.mktemp("serve-limited") / "server.log"
    served = OneGenServer(demo_db, COLLECTION, *LIMITED_FLAGS, log=log, api_key=LIMITED_KEY)
    yield served
    served.stop()
