"""`OneGenEmbedding`: the OneGen model as a LlamaIndex embedding model (`[RD]` / `[RQ]`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api import ClientAPI
from chromadb.config import Settings as ChromaSettings
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, PrivateAttr
from llama_index.vector_stores.chroma import ChromaVectorStore

from onegen_integrations.model import OneGenModel
from onegen_integrations.store import DEFAULT_COLLECTION, DEFAULT_PATH, ChromaDocumentStore


class OneGenEmbedding(BaseEmbedding):
    """A `OneGenModel` as a LlamaIndex embedding model.

    Documents (nodes) are embedded as `"{text}[RD]"` (`model.embed_documents`), standalone
    queries as `"{text}[RQ]"` (`model.embed_query`). Wrap the same model object as
    `OneGenLLM`, so one copy of the weights serves both. The one-pass engines never call the
    query side: their query vector is the hidden state where the model emits `[RQ]`.

    Key arguments: `embed_batch_size` (texts per forward pass, default 10); progress bars
    come from LlamaIndex (`VectorStoreIndex.from_documents(..., show_progress=True)`).

    Example:
        embed_model = OneGenEmbedding(model)
        vector_store = embed_model.chroma_vector_store(chromadb.EphemeralClient(), "notes")
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=embed_model,
        )
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    _model: OneGenModel = PrivateAttr()

    def __init__(self, model: OneGenModel, **fields: Any) -> None:
        fields.setdefault("model_name", model.name)
        super().__init__(**fields)
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        return "OneGenEmbedding"

    @property
    def model(self) -> OneGenModel:
        """The shared model."""
        return self._model

    def chroma_vector_store(
        self,
        client: ClientAPI | None = None,
        collection: str = DEFAULT_COLLECTION,
        *,
        path: str | Path | None = None,
    ) -> ChromaVectorStore:
        """A `ChromaVectorStore` over a collection that records this model's fingerprint.

        The collection is opened the way `ChromaDocumentStore` opens one: cosine space,
        Chroma's own embedding function off, and an `EmbeddingModelMismatchError` when it
        was filled by another model. Give a Chroma `client`, or a `path` for a persistent
        database; with neither, the collection lives in memory.
        """
        if client is not None and path is not None:
            raise ValueError("give either a Chroma client or a path, not both")
        if client is None and path is None:
            client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        store = ChromaDocumentStore(self._model, client=client, collection=collection, path=path or DEFAULT_PATH)
        return ChromaVectorStore(chroma_collection=store.collection)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._model.embed_query(query).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._model.embed_documents(texts, batch_size=self.embed_batch_size).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
