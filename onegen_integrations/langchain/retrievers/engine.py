"""`EngineRetriever`: a `OneGenRetriever` behind the engine's `Retriever` protocol, as a LangChain child run."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.runnables import ensure_config

from onegen_integrations.errors import EmbeddingModelMismatchError
from onegen_integrations.langchain.retrievers.onegen import SCORE_KEY, OneGenRetriever
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Hit, RetrievalQuery


class EngineRetriever:
    """What a session calls at each `[RQ]`: runs `retriever` with the `[RQ]` hidden state.

    The retriever is invoked with the config of the LangChain run in progress (LangChain
    keeps it in a context variable while a runnable runs), so callbacks and
    `astream_events` see `on_retriever_start`/`on_retriever_end` with the documents, as a
    child of the chain's run. The query text in those events is the user's message and the
    answer so far; it is never embedded. The documents found are kept, as LangChain
    `Document`s, until a chain takes them (`take_documents`) for its `context` output.
    """

    def __init__(self, retriever: OneGenRetriever) -> None:
        self.retriever = retriever
        self._found: list[Document] = []

    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        """The engine's `Retriever` protocol: the best `query.k` documents for `query.vector`."""
        documents = self.retriever.invoke(query.text, ensure_config(), vector=query.vector.tolist(), k=query.k)
        self._found.extend(documents)
        return [
            Hit(
                id=doc.id or "",
                text=doc.page_content,
                score=float(doc.metadata.get(SCORE_KEY, 0.0)),
                metadata=doc.metadata,
            )
            for doc in documents
        ]

    def take_documents(self) -> list[Document]:
        """The documents retrieved since the last call, in order."""
        found, self._found = self._found, []
        return found


def check_searchable(retriever: OneGenRetriever, model: OneGenModel) -> None:
    """Raise `EmbeddingModelMismatchError` unless `model`'s `[RQ]` states can search `retriever`'s store."""
    indexed_by = retriever.model
    if model.fingerprint != indexed_by.fingerprint:
        raise EmbeddingModelMismatchError(
            f"the retriever's store holds vectors of model {indexed_by.name!r} (fingerprint "
            f"{indexed_by.fingerprint}), but the chat model is {model.name!r} (fingerprint "
            f"{model.fingerprint}): [RQ] states of one model cannot search another's vectors. "
            "Index the documents with the chat model's OneGenEmbeddings"
        )
