"""Fixtures for the LangChain tests: the demo corpus and a chat chain on the tiny model."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from onegen_integrations.ingest import demo_documents
from onegen_integrations.langchain import (
    ChatOneGen,
    OneGenChatChain,
    OneGenEmbeddings,
    OneGenRetriever,
)
from onegen_integrations.model import OneGenModel
from tests.langchain.probes import TEXTS


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, str]]:
    """The bundled demo corpus: `{"id", "title", "text"}` records."""
    return [{"id": doc.id, "title": doc.metadata["title"], "text": doc.text} for doc in demo_documents()]


@pytest.fixture
def chat_chain(tiny_model: OneGenModel, tmp_path: Path) -> OneGenChatChain:
    """A chat chain on the tiny model over the probes' three texts, k=1, 6 new tokens per answer."""
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    retriever = OneGenRetriever.from_texts(TEXTS, OneGenEmbeddings(onegen_model=tiny_model), k=1, client=client)
    return OneGenChatChain(llm=ChatOneGen(onegen_model=tiny_model, max_tokens=6), retriever=retriever)
