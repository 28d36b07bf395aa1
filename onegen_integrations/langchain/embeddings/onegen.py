"""`OneGenEmbeddings`: the OneGen model's `[RD]` and `[RQ]` hidden states as LangChain embeddings."""

from __future__ import annotations

from typing import Any

from chromadb.config import Settings
from langchain_chroma import Chroma
from langchain_core.embeddings import Embeddings
from pydantic import Field

from onegen_integrations.langchain.shared_model import UsesOneGenModel
from onegen_integrations.locations import DEFAULT_COLLECTION
from onegen_integrations.store import check_cosine, check_recorded_model, collection_metadata


class OneGenEmbeddings(UsesOneGenModel, Embeddings):
    """OneGen document and query embeddings (unit vectors, cosine similarity).

    Documents are embedded as `"{text}[RD]"`, queries as `"{text}[RQ]"` (the model used as a
    plain query encoder). Inside a one-pass RAG chain queries are never embedded this way: the
    hidden state at the `[RQ]` the model generates is the query.

    Setup:
        Install `onegen-integrations[langchain]`. Give a loaded `OneGenModel` (shared with
        `ChatOneGen`), or a `model` name loaded on first use.

    Key init args:
        onegen_model: an already loaded `OneGenModel`.
        model: `"default"` or a model directory, when `onegen_model` is not given.
        batch_size: documents per forward pass.

    Example:
        ```python
        from onegen_integrations.langchain import OneGenEmbeddings

        embeddings = OneGenEmbeddings(model="default")
        vectors = embeddings.embed_documents(["Odile Marchetti was a chemist."])
        query = embeddings.embed_query("Who was Odile Marchetti?")
        ```
    """

    batch_size: int = Field(default=16, ge=1)
    """Documents embedded per forward pass (sorted by length, padded per batch)."""
    show_progress: bool = False
    """Show a progress bar while embedding documents."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors of `"{text}[RD]"` for each text, as lists of Python floats."""
        if not texts:
            return []
        vectors = self.load_model().embed_documents(texts, batch_size=self.batch_size, show_progress=self.show_progress)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """Unit vector of `"{text}[RQ]"`, as a list of Python floats."""
        return self.load_model().embed_query(text).tolist()

    def collection_metadata(self) -> dict[str, Any]:
        """Chroma collection metadata recording which model fills it (`ChromaDocumentStore`'s keys).

        A store created with it refuses queries from a different model (see `OneGenRetriever`).
        """
        return collection_metadata(self.load_model())

    def chroma_vector_store(self, **chroma_kwargs: Any) -> Chroma:
        """A `langchain_chroma.Chroma` store these embeddings fill, set up for OneGen.

        The collection measures cosine distance and records the model's fingerprint, so
        `OneGenRetriever(store=...)` and `ChromaDocumentStore` can open it. `chroma_kwargs` go to
        `Chroma` (`collection_name`, default "onegen"; `persist_directory`, `client`, ...). A
        collection filled by another model raises `EmbeddingModelMismatchError`; one measuring
        another distance raises `StoreError`. Fill it with `add_documents` or LangChain's
        indexing API (`langchain_core.indexing.index`).
        """
        chroma_kwargs.setdefault("collection_name", DEFAULT_COLLECTION)
        chroma_kwargs.setdefault("client_settings", Settings(anonymized_telemetry=False))
        store = Chroma(
            embedding_function=self,
            collection_metadata=self.collection_metadata(),
            collection_configuration={"hnsw": {"space": "cosine"}},
            **chroma_kwargs,
        )
        collection = store._collection  # langchain-chroma has no public accessor for it
        check_recorded_model(collection, self.load_model())
        check_cosine(collection)
        return store
