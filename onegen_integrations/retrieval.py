"""What the engine asks of a retriever, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class RetrievalQuery:
    """One retrieval request from the engine.

    `vector` is the unit-normalised hidden state at `[RQ]`; `text` is the user's message and
    the answer so far (for logs and frameworks that want a query string; never re-encoded).
    """

    vector: np.ndarray
    text: str
    k: int


@dataclass(frozen=True)
class Hit:
    """One retrieved document and its score, higher is closer.

    `ChromaDocumentStore` gives cosine similarity; a framework retriever gives its own
    store's similarity, passed through unchanged.
    """

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers a `RetrievalQuery` with hits, best first.

    `ChromaDocumentStore` is one; the LlamaIndex and LangChain adapters wrap their
    frameworks' retrievers as others.
    """

    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        """The best `query.k` hits for `query.vector`."""
        ...
