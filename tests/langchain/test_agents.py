"""LangChain/LangGraph agents: create_agent with and without tools, and the chat chain as a graph node."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel

from onegen_integrations.errors import UnsupportedFrameworkError
from onegen_integrations.langchain import ChatOneGen, OneGenChatChain
from onegen_integrations.model import OneGenModel
from tests.langchain.probes import ScriptedAnswers

pytest.importorskip("langgraph")
pytest.importorskip("langchain.agents")
from langchain.agents import create_agent
from langchain.agents.structured_output import ProviderStrategy
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph


def thread(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


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
