"""OneGenRAGChain: retrieval with the `[RQ]` hidden state inside one generation pass, seen by callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from onegen_integrations.errors import EmbeddingModelMismatchError, EmptyTextError
from onegen_integrations.langchain import ChatOneGen, OneGenEmbeddings, OneGenRAGChain, OneGenRetriever
from onegen_integrations.model import OneGenModel
from tests.conftest import make_tiny_model
from tests.langchain.probes import TEXTS, RecordingHandler, capture_search_vectors, count_calls, rq_state


@pytest.fixture
def chain(tiny_model: OneGenModel, tmp_path: Path) -> OneGenRAGChain:
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    embeddings = OneGenEmbeddings(onegen_model=tiny_model)
    retriever = OneGenRetriever.from_texts(TEXTS, embeddings, k=1, client=client)
    return OneGenRAGChain(llm=ChatOneGen(onegen_model=tiny_model, max_tokens=6), retriever=retriever)


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
    np.testing.assert_allclose(vectors[0], rq_state(model, [*model.text.markup(prompt), model.query_token_id]), atol=1e-4)


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
    history = [("human", "Tell me about Odile Marchetti."), ("ai", "She was a chemist.")]
    chain.invoke({"question": "Where was she born?", "history": history})
    conversation = [
        {"role": "system", "content": model.config.system_prompt},
        {"role": "user", "content": "Tell me about Odile Marchetti."},
        {"role": "assistant", "content": "She was a chemist."},
        {"role": "user", "content": "Where was she born?"},
    ]
    prompt = model.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    np.testing.assert_allclose(vectors[0], rq_state(model, [*model.text.markup(prompt), model.query_token_id]), atol=1e-4)


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
