"""`MiniLMEncoder` as each framework's embedding model: the separate retriever of the peer pipelines."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import PrivateAttr
from onegen_evaluation.minilm import MiniLMEncoder


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 as a LlamaIndex embedding model (queries and documents alike).

    Example:
        index = VectorStoreIndex.from_documents(documents, embed_model=MiniLMEmbedding(MiniLMEncoder()))
    """

    _encoder: MiniLMEncoder = PrivateAttr()

    def __init__(self, encoder: MiniLMEncoder, **fields: Any) -> None:
        fields.setdefault("model_name", "all-MiniLM-L6-v2")
        super().__init__(**fields)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encoder.encode(texts).tolist()


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 as LangChain embeddings (queries and documents alike).

    Example:
        store = InMemoryVectorStore.from_texts(texts, MiniLMEmbeddings(MiniLMEncoder()))
    """

    def __init__(self, encoder: MiniLMEncoder) -> None:
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text."""
        return self.encoder.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The unit vector of `text`."""
        return self.encoder.encode([text])[0].tolist()
