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
BACKEND = ("--backend", "torch")
"""Torch gives every conversation a cache of its own, so equal requests give equal answers
whatever else the server holds; on llama.cpp conversations share one KV buffer, and where they sit
in it moves scores in the third decimal (docs/server.md, "Concurrency")."""
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


@pytest.fixture(scope="session")
def server(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneGenServer]:
    """`onegen serve` on the default model with its default limits and no API key."""
    served = OneGenServer(demo_db, COLLECTION, *BACKEND, log=tmp_path_factory.mktemp("serve") / "server.log")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def limited(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneGenServer]:
    """`onegen serve` with `LIMITED_FLAGS` and the API key `LIMITED_KEY`."""
    log = tmp_path_factory.mktemp("serve-limited") / "server.log"
    served = OneGenServer(demo_db, COLLECTION, *BACKEND, *LIMITED_FLAGS, log=log, api_key=LIMITED_KEY)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def llama_server(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneGenServer]:
    """`onegen serve` on the llama.cpp backend, the default where llama-cpp-python is installed."""
    pytest.importorskip("llama_cpp")
    log = tmp_path_factory.mktemp("serve-llama") / "server.log"
    served = OneGenServer(demo_db, COLLECTION, "--backend", "llama.cpp", log=log)
    yield served
    served.stop()
