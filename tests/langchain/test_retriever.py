"""OneGenRetriever: text or vector queries over Chroma or ChromaDocumentStore, and stores it refuses."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings
from langchain_chroma import Chroma

from onegen_integrations.errors import (
    EmbeddingModelMismatchError,
    InvalidDocumentError,
    InvalidQueryError,
    StoreError,
)
from onegen_integrations.langchain import OneGenEmbeddings, OneGenRetriever
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import ChromaDocumentStore, content_id
from tests.conftest import make_tiny_model
from tests.langchain.probes import count_calls

TEXTS = [
    "Odile Marchetti founded the Varenne Institute.",
    "Selbrook lies on the River Tamsey.",
    "The RV Petrel is a research vessel.",
]


@pytest.fixture
def client(tmp_path: Path) -> chromadb.ClientAPI:
    return chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))


@pytest.fixture
def retriever(tiny_model: OneGenModel, client: chromadb.ClientAPI) -> OneGenRetriever:
    return OneGenRetriever.from_texts(TEXTS, OneGenEmbeddings(onegen_model=tiny_model), k=2, client=client)


def test_a_text_query_is_embedded_with_rq_and_scored_by_cosine(
    retriever: OneGenRetriever, tiny_model: OneGenModel
) -> None:
    documents = retriever.invoke("Who founded the institute?")
    query = tiny_model.embed_query("Who founded the institute?")
    scores = tiny_model.embed_documents(TEXTS) @ query
    assert [doc.page_content for doc in documents] == [TEXTS[i] for i in scores.argsort()[::-1][:2]]
    assert documents[0].metadata["score"] == pytest.approx(float(scores.max()), abs=1e-4)


def test_a_vector_query_is_searched_as_given_without_embedding_the_text(
    retriever: OneGenRetriever, tiny_model: OneGenModel
) -> None:
    calls = []
    embeddings = retriever.embeddings
    original = embeddings.embed_query
    object.__setattr__(embeddings, "embed_query", lambda text: calls.append(text) or original(text))
    vector = tiny_model.embed_documents([TEXTS[2]])[0]
    documents = retriever.invoke("(shown in callbacks only)", vector=vector.tolist(), k=1)
    assert calls == []
    assert documents[0].page_content == TEXTS[2]
    assert documents[0].metadata["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_chroma_document_store_serves_the_same_documents(
    retriever: OneGenRetriever, tiny_model: OneGenModel, tmp_path: Path
) -> None:
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "store")
    store.add(TEXTS, show_progress=False)
    from_store = OneGenRetriever(store=store, k=2).invoke("Which river?")
    assert [(d.page_content, round(d.metadata["score"], 4)) for d in from_store] == [
        (d.page_content, round(d.metadata["score"], 4)) for d in retriever.invoke("Which river?")
    ]


def test_a_collection_filled_by_another_model_is_refused(retriever: OneGenRetriever) -> None:
    other = OneGenEmbeddings(onegen_model=make_tiny_model(seed=1))
    with pytest.raises(EmbeddingModelMismatchError, match="not comparable"):
        OneGenRetriever(store=retriever.store, embeddings=other)


def test_a_chroma_store_without_onegen_vectors_is_refused(client: chromadb.ClientAPI, tiny_model: OneGenModel) -> None:
    store = Chroma(collection_name="plain", client=client)
    with pytest.raises(StoreError, match="no OneGenEmbeddings"):
        OneGenRetriever(store=store)
    with pytest.raises(StoreError, match="records no OneGen model"):
        OneGenRetriever(store=store, embeddings=OneGenEmbeddings(onegen_model=tiny_model))


def test_a_collection_measuring_l2_distance_is_refused(client: chromadb.ClientAPI, tiny_model: OneGenModel) -> None:
    store = Chroma(
        collection_name="l2-space", client=client, embedding_function=OneGenEmbeddings(onegen_model=tiny_model)
    )
    with pytest.raises(StoreError, match="cosine"):
        OneGenRetriever(store=store)


@pytest.mark.parametrize("k", [0, -1], ids=["zero", "negative"])
def test_a_k_below_one_is_refused_for_either_store(
    retriever: OneGenRetriever, tiny_model: OneGenModel, tmp_path: Path, k: int
) -> None:
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "store")
    store.add(TEXTS, show_progress=False)
    for each in (retriever, OneGenRetriever(store=store, k=2)):
        with pytest.raises(InvalidQueryError, match=f"k must be at least 1, got {k}"):
            each.invoke("Which river?", k=k)
        assert len(each.invoke("Which river?")) == 2  # the retriever's own k still applies
    assert store.count() == len(TEXTS)
    assert retriever.store._collection.count() == len(TEXTS)


def test_k_given_to_invoke_overrides_the_retrievers_k(retriever: OneGenRetriever) -> None:
    assert len(retriever.invoke("Which river?", k=1)) == 1
    assert len(retriever.invoke("Which river?", k=3)) == 3


def test_from_texts_run_again_stores_each_text_once_and_embeds_nothing_twice(
    retriever: OneGenRetriever, client: chromadb.ClientAPI
) -> None:
    embeddings = retriever.embeddings
    embedded = count_calls(embeddings, "embed_documents")
    again = OneGenRetriever.from_texts([*TEXTS, TEXTS[0]], embeddings, k=2, client=client)
    assert again.store._collection.count() == len(TEXTS)
    assert embedded == []
    documents = again.invoke("Which river?")
    assert len({doc.id for doc in documents}) == 2
    assert {doc.id for doc in documents} <= {content_id(text) for text in TEXTS}


def test_from_texts_refuses_one_id_for_two_texts(tiny_model: OneGenModel, client: chromadb.ClientAPI) -> None:
    with pytest.raises(InvalidDocumentError, match="given to two different texts"):
        OneGenRetriever.from_texts(TEXTS[:2], OneGenEmbeddings(onegen_model=tiny_model), ids=["x", "x"], client=client)
