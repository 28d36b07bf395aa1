"""OneGenQueryEngine: retrieval by the [RQ] hidden state, inside one generation pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.tools import QueryEngineTool

from onegen_integrations.errors import EmbeddingModelMismatchError, EmptyTextError
from onegen_integrations.llama_index import EngineRetriever, OneGenQueryEngine
from onegen_integrations.replay import RETRIEVALS_KEY

QUESTION = "Who founded the Varenne Institute?"


def test_retrieval_searches_with_the_rq_state_not_a_query_embedding(index, model, monkeypatch, recorded_events):
    embed_model = index._embed_model
    calls: list[str] = []
    monkeypatch.setattr(embed_model, "_get_query_embedding", lambda q: calls.append(q) or [0.0])
    monkeypatch.setattr(model, "embed_query", lambda q: calls.append(q) or np.zeros(model.dimension))
    response = OneGenQueryEngine.from_index(index, max_new_tokens=6).query(QUESTION)
    assert calls == []
    assert isinstance(response, Response)
    [retrieval] = response.metadata[RETRIEVALS_KEY]
    assert response.source_nodes[0].node.node_id == retrieval["hits"][0]["id"]
    [start] = [e for e in recorded_events if isinstance(e, RetrievalStartEvent)]
    stored = index.vector_store.client.get(include=["embeddings"])
    nearest = stored["ids"][int(np.argmax(np.asarray(stored["embeddings"]) @ start.str_or_query_bundle.embedding))]
    assert retrieval["hits"][0]["id"] == nearest


def test_the_framework_sees_each_retrieval_with_the_rq_vector(index, model, recorded_events):
    response = OneGenQueryEngine.from_index(index, max_new_tokens=4).query(QUESTION)
    starts = [e for e in recorded_events if isinstance(e, RetrievalStartEvent)]
    ends = [e for e in recorded_events if isinstance(e, RetrievalEndEvent)]
    assert len(starts) == len(ends) == 1
    engine_turn = model.session(EngineRetriever(index.as_retriever()), max_new_tokens=4).ask(QUESTION)
    np.testing.assert_allclose(
        starts[0].str_or_query_bundle.embedding, engine_turn.retrievals[0].query.vector, atol=1e-6
    )
    assert starts[0].str_or_query_bundle.query_str.startswith(QUESTION)
    assert [n.node.node_id for n in ends[0].nodes] == [n.node.node_id for n in response.source_nodes]


def test_each_retrieval_is_a_span(index):
    handler = SimpleSpanHandler()
    root = get_dispatcher()
    root.add_span_handler(handler)
    try:
        OneGenQueryEngine.from_index(index, max_new_tokens=4).query(QUESTION)
    finally:
        root.span_handlers.remove(handler)
    names = [span.id_.split("-")[0] for span in handler.completed_spans]
    assert "EngineRetriever.retrieve" in names
    assert "OneGenQueryEngine.query" in names


def test_a_streamed_answer_equals_the_plain_one(index):
    plain = OneGenQueryEngine.from_index(index, max_new_tokens=10).query(QUESTION)
    streamed = OneGenQueryEngine.from_index(index, max_new_tokens=10, streaming=True).query(QUESTION)
    assert isinstance(streamed, StreamingResponse)
    assert streamed.source_nodes == []
    pieces = iter(streamed.response_gen)
    first = next(pieces)
    assert [n.node.node_id for n in streamed.source_nodes] == [n.node.node_id for n in plain.source_nodes]
    assert first + "".join(pieces) == plain.response
    assert streamed.metadata["usage"]["retrievals"] == 1


def test_node_postprocessors_decide_what_is_inserted(index):
    cutoff = SimilarityPostprocessor(similarity_cutoff=2.0)
    response = OneGenQueryEngine.from_index(index, node_postprocessors=[cutoff], max_new_tokens=4).query(QUESTION)
    [retrieval] = response.metadata[RETRIEVALS_KEY]
    assert response.source_nodes == [] and retrieval["hits"] == []
    assert response.metadata["usage"]["inserted_tokens"] == 0


def test_similarity_top_k_passages_are_inserted(index):
    response = OneGenQueryEngine.from_index(index, similarity_top_k=3, max_new_tokens=4).query(QUESTION)
    assert len(response.source_nodes) == 3
    assert len(response.metadata[RETRIEVALS_KEY][0]["hits"]) == 3


def test_an_empty_query_is_refused(index):
    with pytest.raises(EmptyTextError, match="query is empty"):
        OneGenQueryEngine.from_index(index).query("   ")


def test_an_index_embedded_by_another_model_is_refused():
    index = VectorStoreIndex.from_documents([Document(text="x")], embed_model=MockEmbedding(embed_dim=8))
    with pytest.raises(EmbeddingModelMismatchError, match="OneGenEmbedding"):
        OneGenQueryEngine.from_index(index)


def test_bad_options_fail_when_the_engine_is_built(index):
    with pytest.raises(ValueError, match="retrieval must be"):
        OneGenQueryEngine.from_index(index, retrieval="sometimes")


@pytest.mark.asyncio
async def test_async_queries_match_the_sync_one(index):
    plain = OneGenQueryEngine.from_index(index, max_new_tokens=8).query(QUESTION)
    response = await OneGenQueryEngine.from_index(index, max_new_tokens=8).aquery(QUESTION)
    assert response.response == plain.response
    streamed = await OneGenQueryEngine.from_index(index, max_new_tokens=8, streaming=True).aquery(QUESTION)
    assert isinstance(streamed, AsyncStreamingResponse)
    assert "".join([t async for t in streamed.async_response_gen()]) == plain.response
    assert len(streamed.source_nodes) == 1


def test_the_engine_serves_as_an_agent_tool(index):
    tool = QueryEngineTool.from_defaults(
        OneGenQueryEngine.from_index(index, max_new_tokens=6), name="docs", description="Facts about Corvant."
    )
    output = tool.call(input=QUESTION)
    assert output.content == output.raw_output.response
    assert len(output.raw_output.source_nodes) == 1


def test_metadata_is_plain_json(index):
    response = OneGenQueryEngine.from_index(index, max_new_tokens=4).query(QUESTION)
    streamed = OneGenQueryEngine.from_index(index, max_new_tokens=4, streaming=True).query(QUESTION)
    "".join(streamed.response_gen)
    for metadata in (response.metadata, streamed.metadata):
        assert json.loads(json.dumps(metadata)) == metadata
        assert set(metadata) == {"finish_reason", "usage", RETRIEVALS_KEY}


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streamed"])
def test_token_counting_counts_the_one_pass_query_as_the_engine_does(index, model, monkeypatch, streaming):
    counter = TokenCountingHandler(tokenizer=model.tokenizer.encode)
    monkeypatch.setattr(Settings, "_callback_manager", CallbackManager([counter]))
    response = OneGenQueryEngine.from_index(index, max_new_tokens=6, streaming=streaming).query(QUESTION)
    if streaming:
        "".join(response.response_gen)
    usage = response.metadata["usage"]
    [count] = counter.llm_token_counts
    assert count.prompt_token_count == usage["prompt_tokens"] > 0
    assert count.completion_token_count == usage["completion_tokens"] > 0


def test_the_generation_is_an_llm_call_in_the_query_span(index, recorded_events):
    handler = SimpleSpanHandler()
    root = get_dispatcher()
    root.add_span_handler(handler)
    try:
        response = OneGenQueryEngine.from_index(index, max_new_tokens=4).query(QUESTION)
    finally:
        root.span_handlers.remove(handler)
    [start] = [e for e in recorded_events if isinstance(e, LLMChatStartEvent)]
    [end] = [e for e in recorded_events if isinstance(e, LLMChatEndEvent)]
    assert start.messages[-1].content == QUESTION and start.model_dict["model_name"] == "tiny-0"
    assert end.response.message.content == response.response
    assert end.response.message.additional_kwargs[RETRIEVALS_KEY] == response.metadata[RETRIEVALS_KEY]
    spans = {span.id_: span for span in handler.completed_spans}
    assert start.span_id == end.span_id and start.span_id.startswith("OneGenQueryEngine._query")
    assert spans[spans[start.span_id].parent_id].id_.startswith("OneGenQueryEngine.query")
