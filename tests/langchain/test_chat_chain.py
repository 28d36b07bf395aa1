"""OneGenChatChain: one KV cache per session id; a follow-up retrieves from the cached dialogue in one send."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from onegen_integrations.langchain import OneGenChatChain
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY
from tests.langchain.probes import RecordingHandler, capture_search_vectors, count_calls, rq_state


def session(session_id: str) -> dict:
    return {"configurable": {"session_id": session_id}}


def test_a_follow_up_is_one_send_whose_rq_state_attends_to_the_cached_dialogue(chat_chain: OneGenChatChain) -> None:
    model = chat_chain.llm.load_model()
    engine_session = chat_chain.session("alice")
    sends = count_calls(engine_session, "send")
    query_embeddings = count_calls(model, "embed_queries")
    vectors = capture_search_vectors(chat_chain.retriever)
    handler = RecordingHandler()
    for question in ["Who founded the Varenne Institute?", "Where was she born?"]:
        chat_chain.invoke(question, {**session("alice"), "callbacks": [handler]})
    assert [args[0] for args in sends] == ["Who founded the Varenne Institute?", "Where was she born?"]
    assert query_embeddings == []
    assert [query for kind, query in handler.events if kind == "retriever_start"] == [
        "Who founded the Varenne Institute?",
        "Where was she born?",
    ]
    ids = engine_session.token_ids
    second_rq = [i for i, token in enumerate(ids) if token == model.query_token_id][1]
    np.testing.assert_allclose(vectors[1], rq_state(model, ids[: second_rq + 1]), atol=1e-4)


def test_sessions_with_different_ids_do_not_see_each_others_history(
    chat_chain: OneGenChatChain, tiny_model: OneGenModel
) -> None:
    first = chat_chain.invoke("Who founded the Varenne Institute?", session("alice"))
    bobs = chat_chain.invoke("Where was she born?", session("bob"))
    assert [m.text for m in chat_chain.history("alice")] == ["Who founded the Varenne Institute?", first]
    assert [m.text for m in chat_chain.history("bob")] == ["Where was she born?", bobs]
    answer = chat_chain.history("bob")[1]
    assert isinstance(answer, AIMessage) and answer.additional_kwargs[RETRIEVALS_KEY][0]["hits"]
    fresh = OneGenChatChain(llm=chat_chain.llm, retriever=chat_chain.retriever)
    assert fresh.invoke("Where was she born?", session("carol")) == bobs
    assert chat_chain.session("bob").token_ids == fresh.session("carol").token_ids


def test_a_langgraph_thread_id_serves_as_the_session_id(chat_chain: OneGenChatChain) -> None:
    chat_chain.invoke("Who founded the Varenne Institute?", {"configurable": {"thread_id": "t1"}})
    assert len(chat_chain.history("t1")) == 2


def test_ending_a_session_forgets_it(chat_chain: OneGenChatChain) -> None:
    chat_chain.invoke("Who founded the Varenne Institute?", session("alice"))
    chat_chain.end_session("alice")
    assert chat_chain.history("alice") == []


def test_a_call_without_a_session_id_says_how_to_pass_one(chat_chain: OneGenChatChain) -> None:
    with pytest.raises(ValueError, match=r"'configurable': {'session_id'"):
        chat_chain.invoke("Who founded the Varenne Institute?")


def test_history_in_the_input_is_refused_because_the_chain_keeps_it(chat_chain: OneGenChatChain) -> None:
    with pytest.raises(ValueError, match="keeps each session's history itself"):
        chat_chain.invoke({"question": "Where?", "history": [("human", "hi")]}, session("alice"))


def test_the_session_id_is_a_declared_configurable_field(chat_chain: OneGenChatChain) -> None:
    assert [spec.id for spec in chat_chain.config_specs] == ["session_id"]
