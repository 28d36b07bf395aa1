"""`EngineRetriever`: a LlamaIndex retriever behind the engine's `Retriever` protocol, answering each `[RQ]`."""

from __future__ import annotations

from collections.abc import Sequence

import llama_index.core.instrumentation as instrument
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.vector_stores.chroma import ChromaVectorStore

from onegen_integrations.llama_index.index import check_chroma_space
from onegen_integrations.retrieval import Hit, RetrievalQuery
from onegen_integrations.store import check_k

dispatcher = instrument.get_dispatcher(__name__)


class EngineRetriever:
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
        adapter = EngineRetriever(index.as_retriever(similarity_top_k=2))
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
