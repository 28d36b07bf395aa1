"""EngineRetriever and `from_index`: a top-k below 1, or a Chroma collection that does not
measure cosine distance, is refused when the engine is built."""

from __future__ import annotations

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.vector_stores.chroma import ChromaVectorStore

from onegen_integrations.errors import InvalidQueryError, StoreError
from onegen_integrations.llama_index import EngineRetriever, OneGenChatEngine, OneGenEmbedding, OneGenQueryEngine
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import RetrievalQuery
from tests.llama_index.conftest import TEXTS


def stored_texts(index: VectorStoreIndex) -> list[str]:
    return sorted(index.vector_store._collection.get(include=["documents"])["documents"])


@pytest.mark.parametrize("top_k", [0, -2], ids=["zero", "negative"])
def test_a_retriever_with_top_k_below_one_is_refused_before_any_search(index: VectorStoreIndex, top_k: int) -> None:
    with pytest.raises(InvalidQueryError, match=f"similarity_top_k must be at least 1, got {top_k}"):
        EngineRetriever(index.as_retriever(similarity_top_k=top_k))
    assert stored_texts(index) == sorted(TEXTS)


@pytest.mark.parametrize("top_k", [0, -2], ids=["zero", "negative"])
def test_an_engine_with_top_k_below_one_is_refused_when_built(
    index: VectorStoreIndex, model: OneGenModel, top_k: int
) -> None:
    with pytest.raises(InvalidQueryError, match="similarity_top_k must be at least 1"):
        OneGenQueryEngine.from_index(index, similarity_top_k=top_k)
    with pytest.raises(InvalidQueryError, match="similarity_top_k must be at least 1"):
        OneGenQueryEngine(model, index.as_retriever(similarity_top_k=top_k))
    assert stored_texts(index) == sorted(TEXTS)


def test_a_valid_top_k_returns_that_many_hits(index: VectorStoreIndex, model: OneGenModel) -> None:
    adapter = EngineRetriever(index.as_retriever(similarity_top_k=2))

    hits = adapter.retrieve(RetrievalQuery(vector=model.embed_query("Who founded it?"), text="Who founded it?", k=1))

    assert len(hits) == 2 and {hit.text for hit in hits} <= set(TEXTS)


def test_a_chroma_collection_measuring_l2_distance_is_refused(model: OneGenModel, chroma) -> None:
    collection = chroma.create_collection("l2-space")  # Chroma's default space
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in TEXTS],
        storage_context=StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection)),
        embed_model=OneGenEmbedding(model),
    )
    with pytest.raises(StoreError, match=r"measures l2 distance, OneGen needs cosine.*chroma_vector_store"):
        OneGenQueryEngine.from_index(index)
    with pytest.raises(StoreError, match="cosine"):
        OneGenChatEngine(model, index.as_retriever())
    with pytest.raises(StoreError, match="cosine"):
        EngineRetriever(index.as_retriever())
