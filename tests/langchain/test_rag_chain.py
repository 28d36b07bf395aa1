"""OneGenRAGChain: retrieval with the `[RQ]` hidden state inside one generation pass, seen by callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from langchain_core.messages import AIMessage, HumanMessage

from onegen_integrations.errors import EmbeddingModelMismatchError, EmptyTextError
from onegen_integrations.langchain import ChatOneGen, OneGenChatChain, OneGenEmbeddings, OneGenRAGChain, OneGenRetriever
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY
from tests.conftest import make_tiny_model
from tests.langchain.probes import (
    TEXTS,
    ModelRunRecorder,
    RecordingHandler,
    capture_search_vectors,
    count_calls,
    rq_state,
    with_message_history,
)


@pytest.fixture
def chain(tiny_model: OneGenModel, tmp_path: Path) -> OneGenRAGChain:
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    embeddings = OneGenEmbeddings(onegen_model=tiny_model)
    retriever = OneGenRetriever.from_texts(TEXTS, embeddings, k=1, client=client)
    return OneGenRAGChain(llm=ChatOneGen(onegen_model=tiny_model, max_tokens=6), retriever=retriever)


@pytest.fixture
def rag(chain: OneGenRAGChain) -> OneGenRAGChain:
    """The same chain answering `{"answer": AIMessage, "context": [Document]}`."""
    return OneGenRAGChain(llm=chain.llm, retriever=chain.retriever, output="answer_and_context")


def hit_ids(answer: AIMessage) -> list[list[str]]:
    return [[hit["id"] for hit in retrieval["hits"]] for retrieval in answer.additional_kwargs[RETRIEVALS_KEY]]


def test_retrieval_searches_with_the_rq_hidden_state_and_never_embeds_the_question(chain: OneGenRAGChain) -> None:
    model = chain.llm.load_model()
    vectors = capture_search_vectors(chain.retriever)
    query_embeddings = count_calls(chain.retriever.embeddings, "embed_query") + count_calls(model, "embed_queries")
    chain.invoke("Who founded the Varenne Institute?")
    assert query_embeddings == [] and len(vectors) == 1
    conversation = [
        {"role": "system", "content": model.config.system_prompt},
        {"role": "user", "content": "Who founded the Varenne Institute?"},
    ]
    prompt = model.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    np.testing.assert_allclose(
        vectors[0], rq_state(model, [*model.text.markup(prompt), model.query_token_id]), atol=1e-4
    )


def test_callbacks_see_the_retrieval_as_a_child_run_with_its_documents(chain: OneGenRAGChain) -> None:
    handler = RecordingHandler()
    answer = chain.invoke({"question": "Where was Odile born?"}, {"callbacks": [handler]})
    kinds = [kind for kind, _ in handler.events]
    assert kinds == ["chain_start", "retriever_start", "retriever_end", "chain_end"]
    assert handler.events[1][1] == "Where was Odile born?"
    assert handler.events[2][1][0] in TEXTS
    assert handler.runs["retriever_parent"] == handler.runs["chain"]
    assert handler.events[3][1] == answer


async def test_astream_events_show_the_retrieval_then_the_tokens_in_order(chain: OneGenRAGChain) -> None:
    events = [event async for event in chain.astream_events("Who founded the Varenne Institute?", version="v2")]
    names = [event["event"] for event in events]
    assert names.index("on_retriever_end") < names.index("on_chain_stream")
    assert names[0] == "on_chain_start" and names[-1] == "on_chain_end"
    tokens = [event["data"]["chunk"] for event in events if event["event"] == "on_chain_stream"]
    assert "".join(tokens) == events[-1]["data"]["output"] == chain.invoke("Who founded the Varenne Institute?")
    retrieved = next(event for event in events if event["event"] == "on_retriever_end")["data"]["output"]
    assert retrieved[0].page_content in TEXTS


def test_history_is_in_the_cache_when_the_rq_state_is_computed(chain: OneGenRAGChain) -> None:
    model = chain.llm.load_model()
    vectors = capture_search_vectors(chain.retriever)
    # The answer says it retrieved nothing, so it is replayed as text alone (an untrained model
    # retrieves "always", and would otherwise be given a retrieval at the start of the answer).
    answer = AIMessage("She was a chemist.", additional_kwargs={RETRIEVALS_KEY: []})
    history = [HumanMessage("Tell me about Odile Marchetti."), answer]
    chain.invoke({"question": "Where was she born?", "history": history})
    conversation = [
        {"role": "system", "content": model.config.system_prompt},
        {"role": "user", "content": "Tell me about Odile Marchetti."},
        {"role": "assistant", "content": "She was a chemist."},
        {"role": "user", "content": "Where was she born?"},
    ]
    prompt = model.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    np.testing.assert_allclose(
        vectors[0], rq_state(model, [*model.text.markup(prompt), model.query_token_id]), atol=1e-4
    )


@pytest.mark.parametrize("question", ["", "   ", {"question": ""}])
def test_an_empty_question_is_refused(chain: OneGenRAGChain, question: Any) -> None:
    with pytest.raises(EmptyTextError, match="question is empty"):
        chain.invoke(question)


def test_an_input_without_a_question_says_what_to_pass(chain: OneGenRAGChain) -> None:
    with pytest.raises(TypeError, match="give a question string"):
        chain.invoke({"query": "Who?"})


def test_a_store_embedded_by_another_model_is_refused(chain: OneGenRAGChain) -> None:
    other = ChatOneGen(onegen_model=make_tiny_model(seed=1))
    with pytest.raises(EmbeddingModelMismatchError, match="cannot search another's vectors"):
        OneGenRAGChain(llm=other, retriever=chain.retriever)


def test_answer_and_context_gives_the_message_with_its_retrievals_and_usage_and_the_documents(
    chain: OneGenRAGChain, rag: OneGenRAGChain
) -> None:
    result = rag.invoke("Who founded the Varenne Institute?")
    answer, context = result["answer"], result["context"]
    done = chain.new_session().ask("Who founded the Varenne Institute?")
    assert isinstance(answer, AIMessage) and answer.text == done.text == chain.invoke(
        "Who founded the Varenne Institute?"
    )
    assert [r["offset"] for r in answer.additional_kwargs[RETRIEVALS_KEY]] == [0]
    assert hit_ids(answer) == [[doc.id for doc in context]] == [[done.retrievals[0].hits[0].id]]
    assert context[0].page_content in TEXTS and "score" in context[0].metadata
    read = done.usage.prompt_tokens + done.usage.inserted_tokens
    assert answer.usage_metadata == {
        "input_tokens": read,
        "output_tokens": 6,
        "total_tokens": read + 6,
        "input_token_details": {"cache_read": 0},
    }


def test_answer_and_context_streams_the_documents_before_the_answer_chunks_that_follow_them(
    rag: OneGenRAGChain,
) -> None:
    chunks = list(rag.stream("Who founded the Varenne Institute?"))
    assert [sorted(chunk) for chunk in chunks[:2]] == [["context"], ["context"]]
    assert chunks[0]["context"] == [] and len(chunks[1]["context"]) == 1
    assert all(list(chunk) == ["answer"] for chunk in chunks[2:])
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    invoked = rag.invoke("Who founded the Varenne Institute?")
    assert merged["answer"].text == invoked["answer"].text and merged["context"] == invoked["context"]


async def test_ainvoke_and_astream_give_what_invoke_gives(rag: OneGenRAGChain) -> None:
    invoked = rag.invoke("Who founded the Varenne Institute?")
    awaited = await rag.ainvoke("Who founded the Varenne Institute?")
    chunks = [chunk async for chunk in rag.astream("Who founded the Varenne Institute?")]
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    for result in (awaited, streamed):
        assert result["answer"].text == invoked["answer"].text
        assert hit_ids(result["answer"]) == hit_ids(invoked["answer"]) == [[doc.id for doc in result["context"]]]


def test_generation_is_a_chat_model_run_inside_the_chain_run_with_the_conversation_and_usage(
    rag: OneGenRAGChain,
) -> None:
    recorder = ModelRunRecorder()
    history = [
        HumanMessage("Tell me about Odile Marchetti."),
        AIMessage("A chemist.", additional_kwargs={RETRIEVALS_KEY: []}),
    ]
    result = rag.invoke({"question": "Where was she born?", "history": history}, {"callbacks": [recorder]})
    [(messages, parent)] = recorder.starts
    assert parent == recorder.chains[0]
    assert [m.text for m in messages] == ["Tell me about Odile Marchetti.", "A chemist.", "Where was she born?"]
    [ended] = recorder.ends
    assert ended.usage_metadata == result["answer"].usage_metadata and ended.usage_metadata["output_tokens"] == 6
    assert ended.additional_kwargs == result["answer"].additional_kwargs


def test_a_chat_chain_turn_reports_the_cached_dialogue_as_cache_read(chat_chain: OneGenChatChain) -> None:
    recorder = ModelRunRecorder()
    config = {"configurable": {"session_id": "alice"}, "callbacks": [recorder]}
    chat_chain.invoke("Who founded the Varenne Institute?", config)
    chat_chain.invoke("Where was she born?", config)
    first, second = (message.usage_metadata for message in recorder.ends)
    assert first["input_token_details"]["cache_read"] == 0
    assert second["input_token_details"]["cache_read"] > first["input_tokens"]
    assert [m.text for m in recorder.starts[1][0]][::2] == ["Who founded the Varenne Institute?", "Where was she born?"]


def test_a_history_answer_carrying_its_retrievals_is_replayed_into_the_live_sessions_tokens(
    rag: OneGenRAGChain,
) -> None:
    live = OneGenChatChain(llm=rag.llm, retriever=rag.retriever, output="answer_and_context")
    config = {"configurable": {"session_id": "live"}}
    vectors = capture_search_vectors(rag.retriever)
    first = live.invoke("Who founded the Varenne Institute?", config)["answer"]
    follow_up = live.invoke("Where was she born?", config)["answer"]
    replayed = rag.invoke(
        [HumanMessage("Who founded the Varenne Institute?"), first, HumanMessage("Where was she born?")]
    )
    assert len(vectors) == 3  # nothing is retrieved again for the replayed answer
    np.testing.assert_allclose(vectors[2], vectors[1], atol=1e-5)
    assert replayed["answer"].text == follow_up.text and hit_ids(replayed["answer"]) == hit_ids(follow_up)


def test_runnable_with_message_history_stores_answers_that_carry_their_retrievals(rag: OneGenRAGChain) -> None:
    chain, histories = with_message_history(rag)
    config = {"configurable": {"session_id": "s"}}
    first = chain.invoke({"question": "Who founded the Varenne Institute?"}, config)
    second = chain.invoke({"question": "Where was she born?"}, config)
    stored = histories["s"].messages
    assert [m.type for m in stored] == ["human", "ai", "human", "ai"]
    assert stored[1] == first["answer"] and stored[3] == second["answer"]
    assert hit_ids(stored[1]) == [[first["context"][0].id]]


def test_a_message_list_ending_with_the_question_is_a_conversation_to_continue(rag: OneGenRAGChain) -> None:
    history = [HumanMessage("Hi"), AIMessage("Hello.", additional_kwargs={RETRIEVALS_KEY: []})]
    as_list = rag.invoke([*history, ("human", "Where was she born?")])
    as_dict = rag.invoke({"question": "Where was she born?", "history": history})
    assert as_list["answer"].text == as_dict["answer"].text
    with pytest.raises(ValueError, match="last message must be a human message"):
        rag.invoke(history)
