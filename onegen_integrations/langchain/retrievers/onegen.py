"""`OneGenRetriever`: documents from a Chroma store of OneGen vectors, by query text or query vector."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_chroma import Chroma
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, model_validator

from onegen_integrations.errors import InvalidDocumentError, StoreError
from onegen_integrations.langchain.embeddings.onegen import OneGenEmbeddings
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Hit
from onegen_integrations.store import (
    FINGERPRINT_KEY,
    ChromaDocumentStore,
    check_cosine,
    check_k,
    check_recorded_model,
    check_same_model,
    content_id,
)

SCORE_KEY = "score"
"""Metadata key of each returned document's cosine similarity to the query."""


class OneGenRetriever(BaseRetriever):
    """Retrieves documents embedded by a OneGen model, by text or by a query vector.

    `invoke(text)` embeds the text as a standalone `[RQ]` query; `invoke(text, vector=v)`
    searches with `v` as given (the one-pass chains pass the hidden state at the `[RQ]` the
    model generated, and `text` only names the query in callbacks). Each document's metadata
    gains `score`, its cosine similarity to the query.

    Setup:
        The store is a `ChromaDocumentStore`, or a `langchain_chroma.Chroma` whose vectors came
        from `OneGenEmbeddings` (`OneGenRetriever.from_texts` creates one). Chroma's own
        embedding function never runs. A store filled by another model is refused.

    Key init args:
        store: the `ChromaDocumentStore` or `Chroma` store.
        embeddings: `OneGenEmbeddings` of the model that filled the store (default: the
            store's own).
        k: documents per query.

    Example:
        ```python
        from onegen_integrations.langchain import OneGenEmbeddings, OneGenRetriever

        embeddings = OneGenEmbeddings(model="default")
        retriever = OneGenRetriever.from_texts(["Selbrook lies on the River Tamsey."], embeddings, k=1)
        retriever.invoke("Which river runs through Selbrook?")
        ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: ChromaDocumentStore | Chroma
    """Where the documents and their OneGen vectors live."""
    embeddings: OneGenEmbeddings | None = None
    """Embeds text queries and names the model; default: the store's own."""
    k: int = Field(default=4, ge=1)
    """Documents returned per query (a call may pass `k=` to change it; below 1 raises `InvalidQueryError`)."""

    @model_validator(mode="after")
    def _check_store(self) -> OneGenRetriever:
        if self.embeddings is None:
            self.embeddings = _embeddings_of(self.store)
        model = self.embeddings.load_model()
        if isinstance(self.store, ChromaDocumentStore):
            check_same_model(self.store.model.fingerprint, self.store.model.name, model, self.store.collection_name)
        else:
            _check_chroma(self.store, model)
        return self

    @property
    def model(self) -> OneGenModel:
        """The model whose vectors the store holds."""
        assert self.embeddings is not None
        return self.embeddings.load_model()

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        embeddings: OneGenEmbeddings,
        *,
        metadatas: list[dict] | None = None,
        ids: list[str] | None = None,
        k: int = 4,
        **chroma_kwargs: Any,
    ) -> OneGenRetriever:
        """Embed `texts` into a new (or reopened) `Chroma` collection set up for OneGen; retrieve from it.

        `chroma_kwargs` go to `Chroma` (`collection_name`, `persist_directory`, `client`, ...);
        the collection measures cosine distance and records the model's fingerprint
        (`OneGenEmbeddings.chroma_vector_store`). Ids
        default to `content_id(text)`, as in `ChromaDocumentStore.add`: a text given twice is
        stored once, running `from_texts` again on a persistent collection adds nothing twice,
        and texts already stored under their id with the same metadata are not embedded again.
        """
        store = embeddings.chroma_vector_store(**chroma_kwargs)
        texts = list(texts)
        records = _unique_records(texts, [content_id(t) for t in texts] if ids is None else list(ids), metadatas)
        stored = store.get(ids=list(records), include=["documents", "metadatas"]) if records else {"ids": []}
        unchanged = {
            id_
            for id_, text, meta in zip(stored["ids"], stored.get("documents", []), stored.get("metadatas", []))
            if (text, meta or {}) == (records[id_][0], records[id_][1] or {})
        }
        new = [id_ for id_ in records if id_ not in unchanged]
        if new:
            new_metadatas = [records[id_][1] or {} for id_ in new] if metadatas is not None else None
            store.add_texts([records[id_][0] for id_ in new], metadatas=new_metadatas, ids=new)
        return cls(store=store, embeddings=embeddings, k=k)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        vector: Sequence[float] | None = None,
        k: int | None = None,
    ) -> list[Document]:
        assert self.embeddings is not None
        # An explicit k=0 is a mistake to report, not a request for the default k.
        k = self.k if k is None else check_k(k)
        if vector is None:
            vector = self.embeddings.embed_query(query)
        if isinstance(self.store, ChromaDocumentStore):
            hits = self.store.search(vector, k)
        else:
            found = self.store.similarity_search_by_vector_with_relevance_scores([float(x) for x in vector], k)
            hits = [
                Hit(id=doc.id or "", text=doc.page_content, score=1.0 - distance, metadata=doc.metadata)
                for doc, distance in found
            ]
        return [
            Document(page_content=hit.text, id=hit.id, metadata={**hit.metadata, SCORE_KEY: hit.score}) for hit in hits
        ]


def _unique_records(
    texts: list[str], ids: list[str], metadatas: list[dict] | None
) -> dict[str, tuple[str, dict | None]]:
    """Each id once with its text and metadata (the first wins); an id given to two texts is refused."""
    metas: list[dict | None] = [None] * len(texts) if metadatas is None else list(metadatas)
    if not len(texts) == len(ids) == len(metas):
        raise ValueError(
            f"got {len(texts)} texts, {len(ids)} ids and {len(metas)} metadatas: give one of each per text"
        )
    records: dict[str, tuple[str, dict | None]] = {}
    for i, (text, id_, meta) in enumerate(zip(texts, ids, metas)):
        if id_ in records and records[id_][0] != text:
            raise InvalidDocumentError(
                f"id {id_!r} is given to two different texts (the second is text {i}): give each text its own id; nothing was written"
            )
        records.setdefault(id_, (text, meta))
    return records


def _embeddings_of(store: ChromaDocumentStore | Chroma) -> OneGenEmbeddings:
    if isinstance(store, ChromaDocumentStore):
        return OneGenEmbeddings(onegen_model=store.model)
    if isinstance(store.embeddings, OneGenEmbeddings):
        return store.embeddings
    raise StoreError(
        "the Chroma store has no OneGenEmbeddings as its embedding function: pass "
        "embeddings=OneGenEmbeddings(...) for the model that filled it"
    )


def _check_chroma(store: Chroma, model: OneGenModel) -> None:
    """Refuse a Chroma collection another model filled, or one that does not measure cosine distance."""
    collection = store._collection  # langchain-chroma has no public accessor for it
    if FINGERPRINT_KEY in (collection.metadata or {}):
        check_recorded_model(collection, model)
    elif isinstance(store.embeddings, OneGenEmbeddings):
        built_by = store.embeddings.load_model()
        check_same_model(built_by.fingerprint, built_by.name, model, collection.name)
    else:
        raise StoreError(
            f"Chroma collection {collection.name!r} records no OneGen model and its embedding function "
            "is not OneGenEmbeddings, so its vectors cannot be trusted: re-index it with "
            "OneGenRetriever.from_texts(texts, embeddings)"
        )
    check_cosine(collection)
