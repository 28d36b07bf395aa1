"""A LangChain agent on the default model: two tools for actions, the demo corpus for knowledge.

`create_agent` runs ChatOneGen with a calculator and a (fictional) order-status lookup as tools.
Knowledge is not a tool: the chat model searches the demo corpus itself, at each `[RQ]` it emits
inside its answer. The agent sends the whole conversation on every model call; ChatOneGen
answers it over the KV cache it kept for the conversation, feeding only the new messages (a
question, or the tool results).

    python examples/langchain_agent.py "Where is order A-1017?" "What is 17 * 23?"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from onegen_integrations.langchain import ChatOneGen

sys.path.insert(0, str(Path(__file__).parent))
from example_tools import calculate, get_order_status
from langchain_chatbot import PrintRetrievals
from langchain_rag import build_chain

QUESTIONS = [
    "Where is order A-1017?",
    "What is 17 * 23?",
    "Who founded the Varenne Institute?",
]
calculator = tool(calculate)
order_status = tool(get_order_status)


def show(message: BaseMessage) -> None:
    """Print a message of the agent's loop: a call, a tool's result, or an answer."""
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            print(f"[calls {call['name']}({call['args']})]", flush=True)
        if message.text:
            print(message.text, flush=True)
    elif isinstance(message, ToolMessage):
        print(f"[{message.name} returned: {message.text}]", flush=True)


def main(argv: list[str] | None = None) -> list[BaseMessage]:
    """Ask the questions in one agent conversation; return its messages."""
    parser = argparse.ArgumentParser(description="A OneGen agent with tools and retrieval, with LangChain.")
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    parser.add_argument("--max-tokens", type=int, default=64, help="most new tokens per model call")
    args = parser.parse_args(argv)
    rag = build_chain(args.max_tokens)
    model = ChatOneGen(onegen_model=rag.llm.load_model(), max_tokens=args.max_tokens, retriever=rag.retriever)
    agent = create_agent(model, tools=[calculator, order_status], checkpointer=InMemorySaver())
    # recursion_limit: a turn that keeps calling tools stops after a few model calls, with an error
    config: RunnableConfig = {"configurable": {"thread_id": "demo"}, "callbacks": [PrintRetrievals()], "recursion_limit": 12}
    for question in args.questions:
        print(f"> {question}")
        for update in agent.stream({"messages": [("human", question)]}, config, stream_mode="updates"):
            for step in update.values():
                for message in (step or {}).get("messages", []):
                    show(message)
        print()
    return agent.get_state(config).values["messages"]


if __name__ == "__main__":
    main()
