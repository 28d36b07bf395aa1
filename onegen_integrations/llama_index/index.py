"""A `VectorStoreIndex` OneGen can search: the model whose vectors fill it, a Chroma collection
that measures cosine distance, and `from_index` for the engines built over one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.indices.vector_store import VectorStoreIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.vector_stores.chroma import ChromaVectorStore
from typing_extensions import Self

from onegen_integrations.errors import EmbeddingModelMismatchError, StoreError
from onegen_integrations.llama_index.embedding import OneGenEmbedding
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import check_cosine, check_k, check_recorded_model


def index_model(index: VectorStoreIndex) -> OneGenModel:
    """The `OneGenModel` whose `[RD]` vectors fill `index`; raises if another model's do.

    The index must have been built with `OneGenEmbedding` (the `[RQ]` vector only matches
    OneGen document vectors), and a Chroma collection must measure cosine distance
    (`StoreError` otherwise) and, if it records a fingerprint, record this model's.
    """
    embed_model = getattr(index, "_embed_model", None)
    if not isinstance(embed_model, OneGenEmbedding):
        raise EmbeddingModelMismatchError(
            f"the index was embedded by {type(embed_model).__name__} "
            f"({getattr(embed_model, 'model_name', 'unknown')}), not by OneGen: the [RQ] vector only "
            "matches documents embedded by the same OneGen model. Build the index with "
            "embed_model=OneGenEmbedding(model) (or Settings.embed_model = OneGenEmbedding(model))"
        )
    model = embed_model.model
    if isinstance(index.vector_store, ChromaVectorStore):
        check_recorded_model(index.vector_store.client, model)
        check_chroma_space(index.vector_store)
    return model


def check_chroma_space(vector_store: ChromaVectorStore) -> None:
    """Raise `StoreError` unless the collection measures cosine distance (Chroma's default is
    l2), as `ChromaDocumentStore` and the LangChain retriever require: scores and similarity
    cut-offs are meant as cosine similarities."""
    try:
        check_cosine(vector_store.client)
    except StoreError as error:
        raise StoreError(
            f"{error}. In LlamaIndex, OneGenEmbedding(model).chroma_vector_store(client, name) opens one"
        ) from error


class FromIndex:
    """Adds `from_index` to an engine built as `cls(model, retriever, node_postprocessors=..., **kwargs)`."""

    @classmethod
    def from_index(
        cls,
        index: VectorStoreIndex,
        *,
        similarity_top_k: int = 1,
        node_postprocessors: Sequence[BaseNodePostprocessor] = (),
        **kwargs: Any,
    ) -> Self:
        """An engine over a `VectorStoreIndex` built with `OneGenEmbedding`.

        The model is the index's embed model's; an index embedded by another model raises
        `EmbeddingModelMismatchError`. `similarity_top_k` passages are inserted per `[RQ]`
        (below 1 raises `InvalidQueryError`).
        """
        similarity_top_k = check_k(similarity_top_k, "similarity_top_k")
        retriever = index.as_retriever(similarity_top_k=similarity_top_k)
        return cls(index_model(index), retriever, node_postprocessors=node_postprocessors, **kwargs)  # type: ignore[call-arg]
