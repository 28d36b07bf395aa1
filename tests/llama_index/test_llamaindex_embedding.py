"""OneGenEmbedding: [RD] for documents, [RQ] for standalone queries, fingerprinted Chroma."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.vector_stores.chroma import ChromaVectorStore

from onegen_integrations.errors import EmbeddingModelMismatchError, EmptyTextError
from onegen_integrations.llama_index import OneGenEmbedding, OneGenQueryEngine
from onegen_integrations.store import FINGERPRINT_KEY
from tests.conftest import make_tiny_model


def test_documents_use_rd_and_queries_use_rq(model):
    embed_model = OneGenEmbedding(model, embed_batch_size=2)
    texts = ["Ada wrote programs.", "The sea is blue.", "Paris is in France."]
    vectors = embed_model.get_text_embedding_batch(texts)
    np.testing.assert_allclose(vectors, model.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(embed_model.get_query_embedding("Who?"), model.embed_query("Who?"), atol=1e-5)
    assert embed_model.model_name == "tiny-0"


def test_an_empty_query_is_refused(model):
    with pytest.raises(EmptyTextError):
        OneGenEmbedding(model).get_query_embedding(" ")


def test_the_index_stores_onegen_vectors_in_a_fingerprinted_collection(index, model):
    vector_store = index.vector_store
    assert isinstance(vector_store, ChromaVectorStore)
    collection = vector_store.client
    assert collection.metadata[FINGERPRINT_KEY] == model.fingerprint
    stored = collection.get(include=["embeddings", "documents"])
    np.testing.assert_allclose(stored["embeddings"], model.embed_documents(stored["documents"]), atol=1e-5)


def test_a_collection_filled_by_another_model_refuses_to_open(index, chroma):
    other = make_tiny_model(seed=1)
    name = index.vector_store.client.name
    with pytest.raises(EmbeddingModelMismatchError, match="Re-index"):
        OneGenEmbedding(other).chroma_vector_store(chroma, name)


def test_an_index_read_with_another_models_embedding_is_refused(index):
    other = OneGenEmbedding(make_tiny_model(seed=1))
    reopened = VectorStoreIndex.from_vector_store(index.vector_store, embed_model=other)
    with pytest.raises(EmbeddingModelMismatchError, match="fingerprint"):
        OneGenQueryEngine.from_index(reopened)


def test_client_and_path_are_exclusive(model, chroma, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        OneGenEmbedding(model).chroma_vector_store(chroma, "x", path=tmp_path)
