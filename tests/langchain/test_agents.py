"""What works in LangChain/LangGraph agents: a tool-less create_agent, and the chat chain as a graph node."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

from onegen_integrations.langchain import ChatOneGen, OneGenChatChain
from onegen_integrations.model import OneGenModel

pytest.importorskip("langgraph")
pytest.importorskip("langchain.agents")
from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph


def thread(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def test_create_agent_without_tools_chats_over_its_checkpointed_history(tiny_model: OneGenModel) -> None:
    agent = create_agent(ChatOneGen(onegen_model=tiny_model, max_tokens=4), tools=[], checkpointer=InMemorySaver())
    agent.invoke({"messages": [("human", "Hi")]}, thread("1"))
    messages = agent.invoke({"messages": [("human", "And then?")]}, thread("1"))["messages"]
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"]


def test_create_agent_with_tools_fails_because_tool_calling_is_unsupported(tiny_model: OneGenModel) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    agent = create_agent(ChatOneGen(onegen_model=tiny_model), tools=[add])
    with pytest.raises(NotImplementedError, match="does not support tool calling"):
        agent.invoke({"messages": [("human", "What is 2 + 2?")]})


def test_the_chat_chain_as_a_graph_node_keeps_one_cache_per_thread(chat_chain: OneGenChatChain) -> None:
    def answer(state: MessagesState, config: RunnableConfig) -> dict:
        return {"messages": [AIMessage(chat_chain.invoke(state["messages"][-1].text, config))]}

    graph = StateGraph(MessagesState).add_node(answer).add_edge(START, "answer").compile(checkpointer=InMemorySaver())
    graph.invoke({"messages": [("human", "Who founded the Varenne Institute?")]}, thread("a"))
    graph.invoke({"messages": [("human", "Where was she born?")]}, thread("a"))
    graph.invoke({"messages": [("human", "Where was she born?")]}, thread("b"))
    assert len(chat_chain.history("a")) == 4 and len(chat_chain.history("b")) == 2
