"""Fixtures for the LlamaIndex tests: a tiny model, a Chroma client and an index over a few texts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent

from onegen_integrations.llama_index import OneGenEmbedding
from onegen_integrations.model import OneGenModel
from tests.conftest import make_tiny_model

TEXTS = [
    "The Varenne Institute was founded in 1911 by the chemist Odile Marchetti.",
    "Odile Marchetti was born in the town of Selbrook on the River Tamsey.",
    "The Kestrel Bridge over the River Oren was designed by Emil Rasko.",
    "Port Halvey lies where the Oren meets the Ostrel Sea.",
]


@pytest.fixture(scope="module")
def model() -> OneGenModel:
    """One tiny random model per test module (weights are never changed by a test)."""
    return make_tiny_model()


@pytest.fixture
def chroma() -> chromadb.api.ClientAPI:
    """An in-memory Chroma client; tests use fresh collection names on it."""
    return chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))


def build_index(model: OneGenModel, client: chromadb.api.ClientAPI, texts: list[str] = TEXTS) -> VectorStoreIndex:
    """A `VectorStoreIndex` over a new Chroma collection, embedded by `model`."""
    embed_model = OneGenEmbedding(model, embed_batch_size=8)
    vector_store = embed_model.chroma_vector_store(client, f"test-{uuid.uuid4().hex[:8]}")
    return VectorStoreIndex.from_documents(
        [Document(text=text) for text in texts],
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=embed_model,
    )


@pytest.fixture
def index(model: OneGenModel, chroma: chromadb.api.ClientAPI) -> VectorStoreIndex:
    """The four test documents in a fresh collection."""
    return build_index(model, chroma)


class RecordingHandler(BaseEventHandler):
    """A real instrumentation event handler that keeps every event it sees."""

    events: list[BaseEvent] = []  # noqa: RUF012 - a pydantic field: each handler gets its own list

    def handle(self, event: BaseEvent, **kwargs: object) -> None:
        self.events.append(event)


@pytest.fixture
def recorded_events() -> Iterator[list[BaseEvent]]:
    """Events dispatched anywhere in LlamaIndex while the test runs."""
    handler = RecordingHandler(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers.remove(handler)
