"""OneGenChatEngine: many turns on one KV cache, each retrieval by the [RQ] of the whole dialogue."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.chat_engine.types import AgentChatResponse, StreamingAgentChatResponse

from onegen_integrations.errors import EmptyTextError
from onegen_integrations.llama_index import OneGenChatEngine

FIRST = "Who founded the Varenne Institute?"
SECOND = "Where was she born?"


def count_fed_tokens(model, monkeypatch) -> list[int]:
    """Wrap `model.forward_states` (every engine forward goes through it) to record how many
    tokens each call fed."""
    fed: list[int] = []
    forward_states = model.forward_states

    def counting(token_ids, cache):
        fed.append(len(token_ids))
        return forward_states(token_ids, cache)

    monkeypatch.setattr(model, "forward_states", counting)
    return fed


def test_the_second_turn_retrieves_by_the_rq_state_over_the_whole_dialogue(index, model):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=6)
    engine.chat(FIRST)
    second = engine.chat(SECOND)
    [retrieval] = second.metadata["retrievals"]
    ids = engine.session.token_ids
    rq_positions = [i for i, t in enumerate(ids) if t == model.query_token_id]
    assert len(rq_positions) == 2
    hidden = model.forward(ids[: rq_positions[1] + 1], model.new_cache())
    expected = torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()
    np.testing.assert_allclose(retrieval.query.vector, expected, atol=1e-4)


def test_a_turn_feeds_only_its_own_tokens_with_no_rewrite_call(index, model, monkeypatch):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=6)
    engine.chat(FIRST)
    before = len(engine.session.token_ids)
    embed_calls: list[str] = []
    monkeypatch.setattr(model, "embed_query", lambda q: embed_calls.append(q))
    fed = count_fed_tokens(model, monkeypatch)
    second = engine.chat(SECOND)
    assert sum(fed) == len(engine.session.token_ids) - before
    assert second.metadata["usage"].cached_tokens == before
    assert embed_calls == []


def test_sources_are_per_turn(index):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    first = engine.chat(FIRST)
    second = engine.chat(SECOND)
    assert isinstance(second, AgentChatResponse)
    assert len(first.source_nodes) == len(second.source_nodes) == 1
    assert second.source_nodes[0].node.node_id == second.metadata["retrievals"][0].hits[0].id


def test_a_streamed_turn_equals_the_plain_one(index):
    plain = OneGenChatEngine.from_index(index, max_new_tokens=8)
    streamed = OneGenChatEngine.from_index(index, max_new_tokens=8)
    plain.chat(FIRST)
    streamed.chat(FIRST)
    expected = plain.chat(SECOND)
    response = streamed.stream_chat(SECOND)
    assert isinstance(response, StreamingAgentChatResponse)
    assert "".join(response.response_gen) == expected.response
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in expected.source_nodes]
    assert streamed.chat_history == plain.chat_history


def test_chat_history_lists_the_turns(index):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    answer = engine.chat(FIRST).response
    assert [(m.role.value, m.content) for m in engine.chat_history] == [("user", FIRST), ("assistant", answer)]
    engine.reset()
    assert engine.chat_history == [] and engine.session.token_ids == []


def test_the_held_history_keeps_the_cache_and_another_replaces_it(index, model, monkeypatch):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    engine.chat(FIRST)
    session, held = engine.session, engine.chat_history
    fed = count_fed_tokens(model, monkeypatch)
    engine.chat(SECOND, chat_history=held)
    assert engine.session is session
    assert sum(fed) < len(session.token_ids)
    other = [ChatMessage(role="user", content="Hello"), ChatMessage(role="assistant", content="Hi.")]
    engine.chat(SECOND, chat_history=other)
    assert engine.session is not session
    assert [m.content for m in engine.chat_history][:3] == ["Hello", "Hi.", SECOND]


def test_an_abandoned_stream_is_closed_by_the_next_message(index):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=8)
    stream = engine.stream_chat(FIRST)
    next(stream.response_gen)
    engine.chat(SECOND)
    assert [m.content for m in engine.chat_history][::2] == [FIRST, SECOND]


def test_an_empty_message_is_refused(index):
    with pytest.raises(EmptyTextError):
        OneGenChatEngine.from_index(index).chat(" ")


@pytest.mark.asyncio
async def test_async_turns_match_the_sync_ones(index):
    plain = OneGenChatEngine.from_index(index, max_new_tokens=6)
    expected = [plain.chat(FIRST).response, plain.chat(SECOND).response]
    engine = OneGenChatEngine.from_index(index, max_new_tokens=6)
    assert (await engine.achat(FIRST)).response == expected[0]
    streamed = await engine.astream_chat(SECOND)
    assert "".join([t async for t in streamed.async_response_gen()]) == expected[1]
    assert len(streamed.source_nodes) == 1
