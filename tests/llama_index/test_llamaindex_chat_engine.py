"""OneGenChatEngine: many turns on one KV cache, each retrieval by the [RQ] of the whole dialogue."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.chat_engine.types import AgentChatResponse, StreamingAgentChatResponse
from llama_index.core.instrumentation.events.retrieval import RetrievalStartEvent

from onegen_integrations.errors import EmptyTextError
from onegen_integrations.llama_index import OneGenChatEngine
from onegen_integrations.replay import RETRIEVALS_KEY, ReplayFormatError

FIRST = "Who founded the Varenne Institute?"
SECOND = "Where was she born?"
THIRD = "What river runs through that town?"


def count_fed_tokens(model, monkeypatch) -> list[int]:
    """Wrap `model.forward` (every engine forward goes through it) to record how many
    tokens each call fed."""
    fed: list[int] = []
    forward = model.forward

    def counting(token_ids, cache, **options):
        fed.append(len(token_ids))
        return forward(token_ids, cache, **options)

    monkeypatch.setattr(model, "forward", counting)
    return fed


def test_the_second_turn_retrieves_by_the_rq_state_over_the_whole_dialogue(index, model, recorded_events):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=6)
    engine.chat(FIRST)
    engine.chat(SECOND)
    starts = [e for e in recorded_events if isinstance(e, RetrievalStartEvent)]
    ids = engine.session.token_ids
    rq_positions = [i for i, t in enumerate(ids) if t == model.query_token_id]
    assert len(rq_positions) == 2
    hidden = model.forward(ids[: rq_positions[1] + 1], model.new_cache()).states[-1]
    expected = torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()
    np.testing.assert_allclose(starts[-1].str_or_query_bundle.embedding, expected, atol=1e-4)


def test_a_turn_feeds_only_its_own_tokens_with_no_rewrite_call(index, model, monkeypatch):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=6)
    engine.chat(FIRST)
    before = len(engine.session.token_ids)
    embed_calls: list[str] = []
    monkeypatch.setattr(model, "embed_query", lambda q: embed_calls.append(q))
    fed = count_fed_tokens(model, monkeypatch)
    second = engine.chat(SECOND)
    assert sum(fed) == len(engine.session.token_ids) - before
    assert second.metadata["usage"]["cached_tokens"] == before
    assert embed_calls == []


def test_sources_are_per_turn(index):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    first = engine.chat(FIRST)
    second = engine.chat(SECOND)
    assert isinstance(second, AgentChatResponse)
    assert len(first.source_nodes) == len(second.source_nodes) == 1
    assert second.source_nodes[0].node.node_id == second.metadata[RETRIEVALS_KEY][0]["hits"][0]["id"]


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
    first_piece = next(stream.response_gen)
    session = engine.session
    engine.chat(SECOND)
    assert [m.content for m in engine.chat_history][::2] == [FIRST, SECOND]
    assert engine.chat_history[1].content.startswith(first_piece)
    assert engine.session is session  # its cache holds the abandoned answer: nothing fed again


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


def test_each_answer_carries_its_retrievals_as_json(index):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    response = engine.chat(FIRST)
    answer = engine.chat_history[1]
    assert json.loads(json.dumps(response.metadata)) == response.metadata
    assert answer.additional_kwargs[RETRIEVALS_KEY] == response.metadata[RETRIEVALS_KEY]
    assert response.metadata[RETRIEVALS_KEY][0]["hits"][0]["id"] == response.source_nodes[0].node.node_id


def test_a_fresh_engine_given_the_history_holds_the_live_cache_and_answers_alike(index):
    live = OneGenChatEngine.from_index(index, max_new_tokens=6)
    live.chat(FIRST)
    live.chat(SECOND)
    stored = json.dumps([m.model_dump(mode="json") for m in live.chat_history])  # e.g. a web app's session
    expected = live.chat(THIRD)
    fresh = OneGenChatEngine.from_index(index, max_new_tokens=6)
    history = [ChatMessage.model_validate(m) for m in json.loads(stored)]
    response = fresh.chat(THIRD, chat_history=history)
    assert fresh.session.token_ids == live.session.token_ids
    assert response.response == expected.response
    assert response.metadata[RETRIEVALS_KEY] == expected.metadata[RETRIEVALS_KEY]


def test_history_without_the_passages_the_cache_holds_is_fed_again(index, model):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    engine.chat(FIRST)
    session, held = engine.session, engine.chat_history
    texts_only = [ChatMessage(role=m.role, content=m.content) for m in held]
    engine.chat(SECOND, chat_history=texts_only)
    assert engine.session is session  # no retrievals recorded: the held ones stand
    other_passage = [held[0], held[1].model_copy(update={"additional_kwargs": {RETRIEVALS_KEY: []}})]
    engine.chat(SECOND, chat_history=other_passage)
    assert engine.session is not session
    assert engine.session.token_ids.count(model.query_token_id) == 1  # only the new turn's [RQ]


def test_a_bad_retrievals_value_names_the_key(index):
    answer = ChatMessage(role="assistant", content="Odile.", additional_kwargs={RETRIEVALS_KEY: {"offset": 0}})
    with pytest.raises(ReplayFormatError, match=RETRIEVALS_KEY):
        OneGenChatEngine.from_index(index).chat(SECOND, chat_history=[ChatMessage(role="user", content=FIRST), answer])


def test_token_counting_counts_each_turn_as_the_engine_does(index, model):
    counter = TokenCountingHandler(tokenizer=model.tokenizer.encode)
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4, callback_manager=CallbackManager([counter]))
    usages = [engine.chat(FIRST).metadata["usage"], engine.chat(SECOND).metadata["usage"]]
    counted = [(c.prompt_token_count, c.completion_token_count) for c in counter.llm_token_counts]
    assert counted == [(u["prompt_tokens"], u["completion_tokens"]) for u in usages]
    assert usages[1]["cached_tokens"] > 0  # the second turn's prompt is its new tokens only
