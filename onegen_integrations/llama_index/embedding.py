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

from onegen_integrations.backends.selection import BackendName
from onegen_integrations.default_model import DEFAULT_MODEL_NAME
from onegen_integrations.errors import EmbeddingModelMismatchError
from onegen_integrations.model import OneGenModel, require_shareable_name, shareable_name
from onegen_integrations.store import DEFAULT_COLLECTION, DEFAULT_PATH, ChromaDocumentStore


class OneGenEmbedding(BaseEmbedding):
    """A `OneGenModel` as a LlamaIndex embedding model.

    Documents (nodes) are embedded as `"{text}[RD]"` (`model.embed_documents`), standalone
    queries as `"{text}[RQ]"` (`model.embed_query`). Wrap the same model object as
    `OneGenLLM`, so one copy of the weights serves both. The one-pass engines never call the
    query side: their query vector is the hidden state where the model emits `[RQ]`.

    Give a loaded `OneGenModel`, or a model name (`"default"` or a model directory) that is
    loaded on first use, once per process (`OneGenModel.shared(name, backend)`). Pickling sends
    the name, never the weights: another process (an `IngestionPipeline` worker with
    `num_workers`, a Ray actor) loads the model itself, once, and refuses it with
    `EmbeddingModelMismatchError` if its fingerprint is not the sender's. A model built in memory
    has no name to load, so pickling one raises `ModelNotShareableError`.

    Key arguments: `model` (a `OneGenModel` or a name, default `"default"`), `backend` (for a
    name), `embed_batch_size` (texts per forward pass, default 10); progress bars come from
    LlamaIndex (`VectorStoreIndex.from_documents(..., show_progress=True)`).

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

    backend: BackendName = "auto"
    """Where a model given by name runs: `auto`, `torch` or `llama.cpp` (see `OneGenModel.load`)."""

    _model: OneGenModel | None = PrivateAttr(default=None)
    _fingerprint: str | None = PrivateAttr(default=None)

    def __init__(self, model: OneGenModel | str | Path | None = None, **fields: Any) -> None:
        if isinstance(model, OneGenModel):
            fields.setdefault("model_name", model.name)
            fields["backend"] = "torch" if model.hf_model is not None else "llama.cpp"
        elif model is not None:
            fields["model_name"] = str(model)
        else:
            # Unpickling and `from_dict` come here with the name as a field.
            fields.setdefault("model_name", DEFAULT_MODEL_NAME)
        super().__init__(**fields)
        self._model = model if isinstance(model, OneGenModel) else None

    @classmethod
    def class_name(cls) -> str:
        return "OneGenEmbedding"

    @property
    def model(self) -> OneGenModel:
        """The model: the one given, or `model_name` loaded (once per process) on first use."""
        if self._model is None:
            model = OneGenModel.shared(self.model_name, self.backend)
            if self._fingerprint is not None and model.fingerprint != self._fingerprint:
                raise EmbeddingModelMismatchError(
                    f"model {self.model_name!r} loads here with fingerprint {model.fingerprint}, but the "
                    f"OneGenEmbedding sent to this process embedded with fingerprint {self._fingerprint}: "
                    "the model's files changed since the sender loaded them, or differ between the two machines. "
                    "Give every process the same files: save the model you embed with (model.save(directory)) "
                    "and give OneGenEmbedding that directory"
                )
            self._model = model
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the model, plus its fingerprint: the copy loads the model by name."""
        if self._model is None:
            name = shareable_name(self.model_name)
        else:
            name = require_shareable_name(self._model, "OneGenEmbedding copies in other processes")
        # A name that names nothing here is sent as it is: loading it fails in the receiving process.
        unloaded = self.model_copy(update={"model_name": name or self.model_name})
        unloaded._model = None
        unloaded._fingerprint = self._fingerprint if self._model is None else self._model.fingerprint
        return super(OneGenEmbedding, unloaded).__getstate__()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._fingerprint = (state.get("__pydantic_private__") or {}).get("_fingerprint")

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
        store = ChromaDocumentStore(self.model, client=client, collection=collection, path=path or DEFAULT_PATH)
        return ChromaVectorStore(chroma_collection=store.collection)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.model.embed_query(query).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.model.embed_documents(texts, batch_size=self.embed_batch_size).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
