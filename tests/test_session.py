"""The one-pass engine: exactness, single pass per token, limits, concurrency."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from onegen_integrations.errors import ContextWindowExceededError, EmptyTextError, SessionBusyError
from onegen_integrations.events import DoneEvent, RetrievalEvent, TokenEvent
from onegen_integrations.model import OneGenModel
from tests.conftest import ListRetriever, make_tiny_model

DOCS = ["Ada was born in Paris.", "Bob lives in Rome by the river.", "Cleo built a bridge in 1901."]


def force_query_at(model: OneGenModel, steps: set[int]):
    """A logits processor that makes the model emit `[RQ]` at the given answer steps, if allowed."""

    def processor(generated, logits):
        if len(generated) in steps and torch.isfinite(logits[model.query_token_id]):
            logits[model.query_token_id] = 1e4
        return logits

    return processor


def full_forward_states(model: OneGenModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        out = model.hf_model.get_decoder()(input_ids=torch.tensor([ids]))
    return torch.nn.functional.normalize(out.last_hidden_state[0], dim=-1)


def run(session, message, **overrides):
    events = list(session.send(message, **overrides))
    return events, events[-1]


def test_query_vectors_equal_hidden_states_of_one_full_forward(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(
        retriever, retrieval="auto", max_new_tokens=12, logits_processor=force_query_at(tiny_model, {2, 6})
    )
    vectors = []
    for message in ["Who is Ada?", "Where was she born?"]:
        _, done = run(session, message)
        vectors += [r.query.vector for r in done.retrievals]
    ids = session.token_ids
    positions = [i for i, t in enumerate(ids) if t == tiny_model.query_token_id]
    assert len(vectors) == len(positions) == 4
    states = full_forward_states(tiny_model, ids)[positions].numpy()
    np.testing.assert_allclose(np.stack(vectors), states, atol=1e-5)


def test_every_token_passes_through_the_model_exactly_once(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    fed: list[int] = []
    hook = tiny_model.hf_model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: fed.extend(args[0].reshape(-1).tolist())
    )
    session = tiny_model.session(
        retriever, retrieval="auto", max_new_tokens=10, logits_processor=force_query_at(tiny_model, {0, 4})
    )
    try:
        for message in ["Who is Ada?", "And Bob?", "Who built the bridge?"]:
            run(session, message)
    finally:
        hook.remove()
    assert fed == session.token_ids
    assert session.token_ids.count(tiny_model.query_token_id) == 6


def test_later_turns_do_not_reprocess_earlier_ones(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(retriever, retrieval="always", max_new_tokens=8)
    counts: list[int] = []
    hook = tiny_model.hf_model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: counts.append(args[0].numel())
    )
    per_turn = []
    try:
        for message in ["Who is Ada?", "Where was she born?", "Where does Bob live?", "What did Cleo build?"]:
            before = len(counts)
            cached = len(session.token_ids)
            _, done = run(session, message)
            per_turn.append(sum(counts[before:]))
            assert done.usage.cached_tokens == cached
            assert per_turn[-1] == done.usage.processed_tokens
            assert done.usage.rebuilt_tokens == 0
    finally:
        hook.remove()
    # Turn 4 sees three earlier turns in its cache but processes only its own tokens.
    assert per_turn[3] < 0.5 * len(session.token_ids)
    assert per_turn[3] <= per_turn[1] + 8


def test_always_forces_one_query_at_the_start_of_each_answer(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(retriever, retrieval="always", max_new_tokens=5, k=2)
    events, done = run(session, "Who is Ada?")
    assert isinstance(events[0], RetrievalEvent)
    assert len(events[0].hits) == 2
    assert events[0].query.text == "Who is Ada?"
    passages = tiny_model.tokenizer.decode(session.token_ids).split("[RQ]")[1]
    assert passages.startswith("<paragraph>" + events[0].hits[0].text + "</paragraph><paragraph>")
    assert done.usage.inserted_tokens == events[0].inserted_tokens > 0


def test_never_bans_the_query_token(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(
        retriever, retrieval="never", max_new_tokens=6, logits_processor=force_query_at(tiny_model, set(range(6)))
    )
    events, done = run(session, "Who is Ada?")
    assert not any(isinstance(e, RetrievalEvent) for e in events)
    assert done.usage.retrievals == 0
    assert tiny_model.query_token_id not in session.token_ids
    assert retriever.queries == []


def test_a_model_that_emits_queries_forever_is_bounded(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(
        retriever,
        retrieval="auto",
        max_retrievals=3,
        max_new_tokens=20,
        logits_processor=force_query_at(tiny_model, set(range(100))),
    )
    _, done = run(session, "Who is Ada?")
    assert done.usage.retrievals == 3
    assert done.finish_reason == "length"
    assert done.usage.completion_tokens == 20


def test_con_insertion_feeds_continue_with_the_query_token_in_one_call(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(
        retriever, retrieval="auto", insertion="con", max_new_tokens=10, logits_processor=force_query_at(tiny_model, {2, 5})
    )
    calls: list[int] = []
    hook = tiny_model.hf_model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: calls.append(args[0].numel())
    )
    try:
        _, done = run(session, "Link: Ada and Bob")
    finally:
        hook.remove()
    assert [r.inserted_tokens for r in done.retrievals] == [1, 1]
    ids = session.token_ids
    positions = [i for i, t in enumerate(ids) if t == tiny_model.query_token_id]
    assert all(ids[p + 1] == tiny_model.cont_token_id for p in positions)
    # prompt, 2 tokens, [RQ]+<CON>, 2 tokens, [RQ]+<CON>, 3 tokens: the last sampled one waits
    assert calls.count(2) == 2 and len(calls) == 1 + 2 + 1 + 2 + 1 + 3
    states = full_forward_states(tiny_model, ids)[positions].numpy()
    np.testing.assert_allclose(np.stack([r.query.vector for r in done.retrievals]), states, atol=1e-5)


def test_streamed_text_equals_final_text_and_stops_at_stop_strings(tiny_model):
    session = tiny_model.session(None, max_new_tokens=30)
    events, done = run(session, "Say something.")
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert streamed == done.text and len(done.text) > 0
    stop = done.text[len(done.text) // 2 :][:3]
    events, cut = run(tiny_model.session(None, max_new_tokens=30), "Say something.", stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == done.text[: done.text.index(stop)]
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == cut.text


def test_seeded_sampling_repeats_and_differs_from_greedy(tiny_model):
    texts = [tiny_model.session(None, seed=7, temperature=1.0, top_p=0.9).ask("Hi", max_new_tokens=12).text for _ in range(2)]
    greedy = tiny_model.session(None).ask("Hi", max_new_tokens=12).text
    assert texts[0] == texts[1]
    assert texts[0] != greedy


def test_full_context_drops_oldest_turns_and_rebuilds_once(tiny_model):
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(
        retriever, retrieval="always", max_new_tokens=20, context_window=200, logits_processor=force_query_at(tiny_model, {5})
    )
    rebuilds = []
    for message in ["Who is Ada?", "Where does Bob live?", "What did Cleo build?", "Tell me more.", "And then?"]:
        _, done = run(session, message)
        rebuilds.append(done.usage.rebuilt_tokens)
        assert len(session.token_ids) <= 200
    assert session.dropped_turns >= 1
    assert sum(1 for r in rebuilds if r) >= 1
    assert rebuilds[0] == 0
    # After a rebuild the cache still matches one forward over what it holds.
    ids = session.token_ids
    positions = [i for i, t in enumerate(ids) if t == tiny_model.query_token_id]
    np.testing.assert_allclose(
        done.retrievals[-1].query.vector, full_forward_states(tiny_model, ids)[positions[-1]].numpy(), atol=1e-5
    )
    assert len(session.messages) == 2 * (5 - session.dropped_turns)


def test_message_larger_than_the_window_is_refused_and_changes_nothing(tiny_model):
    session = tiny_model.session(None, context_window=120, max_new_tokens=8)
    session.ask("Hello")
    before = (session.token_ids, session.messages)
    with pytest.raises(ContextWindowExceededError, match="context window"):
        session.ask("word " * 200)
    assert (session.token_ids, session.messages) == before
    untouched = tiny_model.session(None, context_window=120, max_new_tokens=8)
    untouched.ask("Hello")
    usages = [dataclasses.replace(s.ask("Again").usage, seconds=0.0) for s in (session, untouched)]
    assert usages[0] == usages[1]


def test_empty_message_is_an_error_at_once(tiny_model):
    session = tiny_model.session(None)
    with pytest.raises(EmptyTextError):
        session.send("   ")


def test_one_session_refuses_a_second_concurrent_caller(tiny_model):
    session = tiny_model.session(None, max_new_tokens=5)
    first = session.send("Hello")
    next(first)
    with pytest.raises(SessionBusyError, match="its own session"):
        session.ask("Hi again")
    list(first)
    assert session.ask("Hi again").usage.completion_tokens == 5


def test_concurrent_sessions_on_one_model_match_sequential_runs():
    model = make_tiny_model(seed=3)
    retriever = ListRetriever(model, DOCS)
    conversations = [["Who is Ada?", "Where?"], ["Bob?", "River?"], ["Cleo?", "When?"], ["Paris?", "Rome?"]]

    def converse(messages):
        session = model.session(retriever, retrieval="always", max_new_tokens=10)
        return [(d.text, [h.id for r in d.retrievals for h in r.hits]) for d in map(session.ask, messages)]

    sequential = [converse(c) for c in conversations]
    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, converse(conversations[i]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(4)] == sequential


def test_history_added_with_add_turn_is_in_the_cache(tiny_model):
    session = tiny_model.session(None, max_new_tokens=3)
    session.add_turn("Who is Ada?", "A mathematician.")
    done = session.ask("Where was she born?")
    text = tiny_model.tokenizer.decode(session.token_ids)
    assert "Who is Ada?<|im_end|>\n<|im_start|>assistant\nA mathematician.<|im_end|>\n<|im_start|>user\nWhere" in text
    assert done.usage.prompt_tokens == len(session.token_ids) - done.usage.completion_tokens + 1
    assert [m["content"] for m in session.messages][:2] == ["Who is Ada?", "A mathematician."]


def test_reset_empties_the_dialogue(tiny_model):
    session = tiny_model.session(None, max_new_tokens=3)
    session.ask("Hello")
    session.reset()
    assert session.messages == [] and session.token_ids == []
    assert session.ask("Hello").usage.cached_tokens == 0


def test_done_event_is_last_and_unique(tiny_model):
    events, _ = run(tiny_model.session(ListRetriever(tiny_model, DOCS), max_new_tokens=4), "Hi")
    assert [isinstance(e, DoneEvent) for e in events].count(True) == 1
    assert isinstance(events[-1], DoneEvent)
