"""LangChain/LangGraph agents: create_agent with and without tools, and the chat chain as a graph node."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel

from onegen_integrations.errors import UnsupportedFrameworkError
from onegen_integrations.ingest import demo_documents
from onegen_integrations.langchain import ChatOneGen, OneGenChatChain, OneGenEmbeddings, OneGenRetriever
from onegen_integrations.model import OneGenModel
from tests.langchain.probes import ScriptedAnswers

pytest.importorskip("langgraph")
pytest.importorskip("langchain.agents")
from langchain.agents import create_agent
from langchain.agents.structured_output import ProviderStrategy
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
from example_tools import calculate, get_order_status


def thread(thread_id: str) -> RunnableConfig:
    """A checkpointer thread; a turn that loops past a few tool calls fails instead of running on."""
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 12}


def test_create_agent_without_tools_chats_over_its_checkpointed_history(tiny_model: OneGenModel) -> None:
    agent = create_agent(ChatOneGen(onegen_model=tiny_model, max_tokens=4), tools=[], checkpointer=InMemorySaver())
    agent.invoke({"messages": [("human", "Hi")]}, thread("1"))
    messages = agent.invoke({"messages": [("human", "And then?")]}, thread("1"))["messages"]
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"]


def test_create_agent_calls_the_tool_and_answers_from_its_result_over_the_same_cache(
    tiny_model: OneGenModel,
) -> None:
    added: list[tuple[int, int]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        added.append((a, b))
        return a + b

    call = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 2}}</tool_call>'
    script = ScriptedAnswers(tiny_model, call, "It is 4.")
    agent = create_agent(ChatOneGen(onegen_model=tiny_model, max_tokens=48, logits_processor=script), tools=[add])
    messages = agent.invoke({"messages": [("human", "What is 2 + 2?")]})["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert added == [(2, 2)] and messages[2].text == "4" and messages[3].text == "It is 4."
    # The second model call read the first call's dialogue from the cache and fed the tool result only.
    first, last = messages[1].usage_metadata, messages[3].usage_metadata
    assert last["input_token_details"]["cache_read"] == first["input_tokens"] + first["output_tokens"] - 1


def test_create_agent_with_a_json_mode_response_format_fails_naming_tool_strategy(tiny_model: OneGenModel) -> None:
    class Answer(BaseModel):
        value: int

    agent = create_agent(ChatOneGen(onegen_model=tiny_model), tools=[], response_format=ProviderStrategy(Answer))
    with pytest.raises(UnsupportedFrameworkError, match=r"no JSON mode .*ToolStrategy\(schema\)"):
        agent.invoke({"messages": [("human", "What is 2 + 2?")]})


def test_the_chat_chain_as_a_graph_node_keeps_one_cache_per_thread(chat_chain: OneGenChatChain) -> None:
    def answer(state: MessagesState, config: RunnableConfig) -> dict:
        return {"messages": [AIMessage(chat_chain.invoke(state["messages"][-1].text, config))]}

    graph = StateGraph(MessagesState).add_node(answer).add_edge(START, "answer").compile(checkpointer=InMemorySaver())
    graph.invoke({"messages": [("human", "Who founded the Varenne Institute?")]}, thread("a"))
    graph.invoke({"messages": [("human", "Where was she born?")]}, thread("a"))
    graph.invoke({"messages": [("human", "Where was she born?")]}, thread("b"))
    assert len(chat_chain.history("a")) == 4 and len(chat_chain.history("b")) == 2


@pytest.fixture(scope="module")
def default_agent(tool_model: OneGenModel):
    """`create_agent` on a tool-trained model with the examples' two tools, retrieving from the
    demo corpus inside its own pass (no retrieval tool), checkpointed per thread."""
    documents = demo_documents()
    retriever = OneGenRetriever.from_texts(
        [d.text for d in documents],
        OneGenEmbeddings(onegen_model=tool_model),
        ids=[d.id for d in documents],
        k=1,
        collection_name=f"agent-{uuid.uuid4().hex[:8]}",
    )
    model = ChatOneGen(onegen_model=tool_model, max_tokens=64, retriever=retriever)
    return create_agent(model, tools=[tool(calculate), tool(get_order_status)], checkpointer=InMemorySaver())


def _ask(agent, question: str, thread_id: str) -> tuple[list, list[str]]:
    """The turn's new messages, and the text pieces the model streamed."""
    before = len(agent.get_state(thread(thread_id)).values.get("messages", []))
    pieces = [
        chunk.text
        for chunk, _ in agent.stream({"messages": [("human", question)]}, thread(thread_id), stream_mode="messages")
        if isinstance(chunk, AIMessage) and chunk.text
    ]
    return agent.get_state(thread(thread_id)).values["messages"][before:], pieces


def _calls(messages: list) -> list[tuple[str, dict]]:
    return [(call["name"], call["args"]) for m in messages if isinstance(m, AIMessage) for call in m.tool_calls]


@pytest.mark.default_model
def test_the_default_agent_calls_a_tool_and_again_on_a_follow_up(default_agent) -> None:
    messages, pieces = _ask(default_agent, "Where is my order A-1017?", "orders")
    assert _calls(messages) == [("get_order_status", {"order_id": "A-1017"})]
    assert "shipped" in messages[-1].text and "<tool_call>" not in "".join(pieces) and pieces
    messages, _ = _ask(default_agent, "And order B-2093?", "orders")  # only the history says what to look up
    assert _calls(messages) == [("get_order_status", {"order_id": "B-2093"})]
    assert "delayed" in messages[-1].text


@pytest.mark.default_model
def test_the_default_agent_retrieves_in_its_pass_instead_of_calling_a_tool(default_agent) -> None:
    messages, pieces = _ask(default_agent, "Who founded the Varenne Institute?", "documents")
    assert _calls(messages) == [] and [m.type for m in messages] == ["human", "ai"]
    answer = messages[-1]
    assert [hit["id"] for r in answer.additional_kwargs["onegen_retrievals"] for hit in r["hits"]] == ["varenne-institute"]
    assert "Marchetti" in answer.text and len(pieces) > 3 and "".join(pieces).strip() == answer.text.strip()
    messages, _ = _ask(default_agent, "Where was she born?", "documents")
    assert _calls(messages) == [] and "Selbrook" in messages[-1].text
