"""LangChain's indexing API over OneGen: `index()` with a record manager and incremental cleanup,
into the Chroma store `OneGenEmbeddings.chroma_vector_store` sets up."""

from __future__ import annotations

import uuid

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.indexing import IndexingResult, InMemoryRecordManager, RecordManager, index

from onegen_integrations.errors import EmbeddingModelMismatchError
from onegen_integrations.langchain import OneGenEmbeddings, OneGenRetriever
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import FINGERPRINT_KEY
from tests.conftest import make_tiny_model
from tests.langchain.probes import TEXTS, count_calls


@pytest.fixture
def client() -> chromadb.ClientAPI:
    return chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))


@pytest.fixture
def embeddings(tiny_model: OneGenModel) -> OneGenEmbeddings:
    return OneGenEmbeddings(onegen_model=tiny_model)


@pytest.fixture
def vector_store(embeddings: OneGenEmbeddings, client: chromadb.ClientAPI) -> Chroma:
    """A fresh collection set up for OneGen."""
    return embeddings.chroma_vector_store(client=client, collection_name=f"notes-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def record_manager() -> RecordManager:
    manager = InMemoryRecordManager(namespace="chroma/notes")
    manager.create_schema()
    return manager


def documents(texts: list[str] = TEXTS) -> list[Document]:
    """One document per source file."""
    return [Document(page_content=text, metadata={"source": f"notes/{i}.md"}) for i, text in enumerate(texts)]


def run_index(docs: list[Document], record_manager: RecordManager, vector_store: Chroma) -> IndexingResult:
    return index(
        docs, record_manager, vector_store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )


def assert_holds_the_models_vectors(vector_store: Chroma, model: OneGenModel, texts: list[str]) -> None:
    got = vector_store.get(include=["documents", "embeddings"])
    assert sorted(got["documents"]) == sorted(texts)
    np.testing.assert_allclose(got["embeddings"], model.embed_documents(got["documents"]), atol=1e-5)


def test_a_first_run_adds_every_document_with_the_models_vectors(vector_store, record_manager, tiny_model):
    result = run_index(documents(), record_manager, vector_store)
    assert result == {"num_added": len(TEXTS), "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert sorted(vector_store.get(include=[])["ids"]) == sorted(record_manager.list_keys())
    assert_holds_the_models_vectors(vector_store, tiny_model, TEXTS)


def test_a_rerun_skips_every_document_and_embeds_nothing(vector_store, record_manager, embeddings):
    run_index(documents(), record_manager, vector_store)
    embedded = count_calls(embeddings, "embed_documents")
    result = run_index(documents(), record_manager, vector_store)
    assert result == {"num_added": 0, "num_updated": 0, "num_skipped": len(TEXTS), "num_deleted": 0}
    assert embedded == []


def test_an_edited_source_is_embedded_again_and_its_old_version_deleted(
    vector_store, record_manager, embeddings, tiny_model
):
    run_index(documents(), record_manager, vector_store)
    edited = [*TEXTS[:-1], "The River Tamsey runs through Selbrook and Port Halvey."]
    embedded = count_calls(embeddings, "embed_documents")
    result = run_index(documents(edited), record_manager, vector_store)
    assert result == {"num_added": 1, "num_updated": 0, "num_skipped": len(TEXTS) - 1, "num_deleted": 1}
    assert embedded == [([edited[-1]],)]
    assert_holds_the_models_vectors(vector_store, tiny_model, edited)


def test_the_retriever_searches_what_index_stored(vector_store, record_manager, tiny_model):
    run_index(documents(), record_manager, vector_store)
    retriever = OneGenRetriever(store=vector_store, k=1)
    (found,) = retriever.invoke("(a vector query)", vector=tiny_model.embed_documents([TEXTS[1]])[0].tolist())
    assert (found.page_content, found.metadata["source"]) == (TEXTS[1], "notes/1.md")
    assert found.metadata["score"] == pytest.approx(1.0, abs=1e-4)


def test_the_store_records_the_model_and_refuses_another(vector_store, client, tiny_model):
    collection = vector_store._collection
    assert collection.metadata[FINGERPRINT_KEY] == tiny_model.fingerprint
    other = OneGenEmbeddings(onegen_model=make_tiny_model(seed=1))
    with pytest.raises(EmbeddingModelMismatchError, match="Re-index"):
        other.chroma_vector_store(client=client, collection_name=collection.name)
