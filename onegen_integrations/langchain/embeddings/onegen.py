"""`OneGenEmbeddings`: the OneGen model's `[RD]` and `[RQ]` hidden states as LangChain embeddings."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import Field

from onegen_integrations.langchain.shared_model import UsesOneGenModel
from onegen_integrations.store import collection_metadata


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
