"""`LlamaIndexRetriever`: the engine's `[RQ]` search answered by any LlamaIndex retriever."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llama_index.core.instrumentation as instrument
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.indices.vector_store import VectorStoreIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.vector_stores.chroma import ChromaVectorStore
from typing_extensions import Self

from onegen_integrations.errors import EmbeddingModelMismatchError, StoreError
from onegen_integrations.llama_index.embedding import OneGenEmbedding
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Hit, RetrievalQuery
from onegen_integrations.store import check_cosine, check_k, check_recorded_model

dispatcher = instrument.get_dispatcher(__name__)


class LlamaIndexRetriever:
    """The engine's `Retriever` protocol over a LlamaIndex retriever and node post-processors.

    When the model emits `[RQ]`, the engine calls `retrieve` with the hidden state there; it
    becomes `QueryBundle(query_str=<message and answer so far>, embedding=<[RQ] vector>)`,
    so the LlamaIndex retriever searches with that vector and never embeds the text, and
    its instrumentation (`RetrievalStartEvent`/`RetrievalEndEvent`) fires as usual. The
    post-processed nodes are inserted into the generation as passages, all of them: how many
    is the LlamaIndex retriever's `similarity_top_k` and the post-processors' business.
    A hit's `score` is the node's score as the LlamaIndex vector store gives it (Chroma's
    is `exp(-distance)`, not the cosine). Every node retrieved lands in `nodes`, which `new_turn` replaces with an empty list.

    Example:
        adapter = LlamaIndexRetriever(index.as_retriever(similarity_top_k=2))
        session = model.session(adapter)
        answer = session.ask("Who founded the Varenne Institute?").text
        sources = adapter.nodes
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        node_postprocessors: Sequence[BaseNodePostprocessor] = (),
        *,
        metadata_mode: MetadataMode = MetadataMode.NONE,
    ) -> None:
        """`metadata_mode` says which node metadata goes into the inserted passage text
        (default none: the model sees the text it was trained to see). A retriever whose
        `similarity_top_k` is below 1 raises `InvalidQueryError` here, not mid-answer, and
        one over a Chroma collection that does not measure cosine distance `StoreError`."""
        top_k = getattr(retriever, "similarity_top_k", None)
        if top_k is not None:
            check_k(top_k, "similarity_top_k")
        vector_store = getattr(retriever, "_vector_store", None)  # VectorIndexRetriever's; no public accessor
        if isinstance(vector_store, ChromaVectorStore):
            check_chroma_space(vector_store)
        self.retriever = retriever
        self.node_postprocessors = list(node_postprocessors)
        self.metadata_mode = metadata_mode
        self.nodes: list[NodeWithScore] = []
        """Nodes retrieved since the last `new_turn`, in order, post-processed."""

    def new_turn(self) -> list[NodeWithScore]:
        """Start collecting a new turn's nodes; returns the list its retrievals will fill."""
        self.nodes = []
        return self.nodes

    @dispatcher.span
    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        """Search with the `[RQ]` vector; return the post-processed nodes as hits."""
        bundle = QueryBundle(query_str=query.text, embedding=query.vector.tolist())
        nodes = self.retriever.retrieve(bundle)
        for postprocessor in self.node_postprocessors:
            nodes = postprocessor.postprocess_nodes(nodes, query_bundle=bundle)
        self.nodes.extend(nodes)
        return [
            Hit(
                id=node.node_id,
                text=node.node.get_content(metadata_mode=self.metadata_mode),
                score=float(node.score or 0.0),
                metadata=dict(node.node.metadata),
            )
            for node in nodes
        ]


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
