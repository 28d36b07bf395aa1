"""`onegen serve` driven by unchanged OpenAI clients: LangChain's ChatOpenAI and LlamaIndex's OpenAILike.

Each client keeps its own history and sends it whole every turn; the `X-Conversation-ID` header lets
the server continue the conversation's KV cache, so the pronoun follow-up retrieves the right document.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage, ChatResponse
from llama_index.llms.openai_like import OpenAILike

from onegen_integrations.ingest import DEMO
from tests.servers import OneGenServer

pytestmark = pytest.mark.default_model

EXAMPLE = Path(__file__).parents[2] / "examples" / "openai_clients.py"
GOLD = json.loads(DEMO.joinpath("conversation_gold.json").read_text())
"""The demo conversation: per turn the user message, the document it needs and the answer."""


class Played(NamedTuple):
    """The demo conversation played through one client under one conversation id."""

    conversation: str
    """The `X-Conversation-ID` the client sent on every turn."""
    replies: list[Any]
    """Per turn, what the client returned (an `AIMessage` or a `ChatResponse`)."""


def new_conversation() -> str:
    return f"test-{uuid.uuid4().hex}"


def chat_openai(server: OneGenServer, conversation: str | None = None, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=server.model_id,
        base_url=f"{server.url}/v1",
        api_key="none",
        max_retries=0,
        timeout=120,
        default_headers={"X-Conversation-ID": conversation or new_conversation()},
        **options,
    )


def openai_like(server: OneGenServer, conversation: str | None = None) -> OpenAILike:
    return OpenAILike(
        model=server.model_id,
        api_base=f"{server.url}/v1",
        api_key="none",
        is_chat_model=True,
        context_window=8192,
        temperature=0.0,
        max_retries=0,
        timeout=120,
        default_headers={"X-Conversation-ID": conversation or new_conversation()},
    )


def hit_ids(response: ChatResponse) -> list[str]:
    """The documents the server retrieved for this answer, from the message's `onegen_retrievals`."""
    message = response.raw.choices[0].message.model_dump()
    return [hit["id"] for retrieval in message["onegen_retrievals"] for hit in retrieval["hits"]]


@pytest.fixture(scope="module")
def langchain_turns(server: OneGenServer) -> Played:
    """The demo conversation played through ChatOpenAI, with the response headers kept."""
    conversation = new_conversation()
    llm = chat_openai(server, conversation, include_response_headers=True)
    history: list[BaseMessage] = []
    for turn in GOLD:
        history.append(HumanMessage(turn["message"]))
        history.append(llm.invoke(history))
    return Played(conversation, history[1::2])


@pytest.fixture(scope="module")
def llama_index_turns(server: OneGenServer) -> Played:
    """The demo conversation played through OpenAILike."""
    conversation = new_conversation()
    llm = openai_like(server, conversation)
    history: list[ChatMessage] = []
    responses = []
    for turn in GOLD:
        history.append(ChatMessage(role="user", content=turn["message"]))
        responses.append(llm.chat(history))
        history.append(responses[-1].message)
    return Played(conversation, responses)


def test_chat_openai_answers_each_turn_of_the_demo_conversation(langchain_turns: Played) -> None:
    for turn, reply in zip(GOLD, langchain_turns.replies):
        assert turn["answer"].lower() in reply.text.lower(), (turn["message"], reply.text)


def test_chat_openai_turns_continue_one_cached_conversation_with_one_retrieval_each(langchain_turns: Played) -> None:
    usages = [reply.response_metadata["token_usage"]["onegen"] for reply in langchain_turns.replies]
    assert [usage["conversation"] for usage in usages] == ["new", "continued", "continued"]
    assert [usage["retrievals"] for usage in usages] == [1, 1, 1]
    assert [usage["rebuilt_tokens"] for usage in usages] == [0, 0, 0]
    cache_reads = [reply.usage_metadata["input_token_details"]["cache_read"] for reply in langchain_turns.replies]
    assert cache_reads[0] == 0 and 0 < cache_reads[1] < cache_reads[2]


def test_chat_openai_gets_back_the_conversation_id_it_sent(langchain_turns: Played) -> None:
    for reply in langchain_turns.replies:
        assert reply.response_metadata["headers"]["x-conversation-id"] == langchain_turns.conversation


def test_openai_like_answers_each_turn_of_the_demo_conversation(llama_index_turns: Played) -> None:
    for turn, response in zip(GOLD, llama_index_turns.replies):
        answer = response.message.content or ""
        assert turn["answer"].lower() in answer.lower(), (turn["message"], answer)


def test_openai_like_follow_ups_retrieve_the_gold_document_of_each_turn(llama_index_turns: Played) -> None:
    assert [hit_ids(response) for response in llama_index_turns.replies] == [[turn["gold_id"]] for turn in GOLD]


def test_openai_like_turns_continue_the_conversation_it_named(llama_index_turns: Played) -> None:
    bodies = [response.raw.model_dump() for response in llama_index_turns.replies]
    assert [body["usage"]["onegen"]["conversation"] for body in bodies] == ["new", "continued", "continued"]
    assert {body["conversation_id"] for body in bodies} == {llama_index_turns.conversation}


def test_chat_openai_streams_the_text_it_answers_without_streaming(server: OneGenServer) -> None:
    question = [HumanMessage(GOLD[0]["message"])]
    invoked = chat_openai(server).invoke(question)
    chunks = list(chat_openai(server, stream_usage=True).stream(question))
    assert len([chunk for chunk in chunks if chunk.text]) > 1
    assert "".join(chunk.text for chunk in chunks) == invoked.text
    streamed = sum(chunks[1:], chunks[0])
    assert streamed.usage_metadata == invoked.usage_metadata


def test_openai_like_streams_the_text_it_answers_without_streaming(server: OneGenServer) -> None:
    question = [ChatMessage(role="user", content=GOLD[0]["message"])]
    answered = openai_like(server).chat(question)
    deltas = [response.delta or "" for response in openai_like(server).stream_chat(question)]
    assert len([delta for delta in deltas if delta]) > 1
    assert "".join(deltas) == answered.message.content


def test_the_example_plays_the_conversation_through_both_clients(server: OneGenServer) -> None:
    ran = subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", f"{server.url}/v1", "--api-key", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    langchain, llama_index, streamed = ran.stdout.split("== ")[1:]
    for turn in GOLD:
        assert f"> {turn['message']}\n{turn['answer']}  [" in langchain
        assert f"> {turn['message']}\n{turn['answer']}  [retrieved: {turn['gold_id']}]" in llama_index
    assert GOLD[0]["answer"] in streamed
