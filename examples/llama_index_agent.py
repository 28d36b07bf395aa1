"""An agent that retrieves from the demo corpus and calls tools: OneGen's agent in LlamaIndex.

    python examples/llama_index_agent.py                      # a short scripted conversation
    python examples/llama_index_agent.py --script FILE        # one user message per line

Each turn is one pass of the model over one KV cache: where it needs knowledge it emits `[RQ]`
and the engine inserts passages from the corpus; where it needs an action or live data it
calls a tool (a calculator, or the order lookup of a made-up shop), the workflow runs it, and
the model answers from the result in the next step over the same cache.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from llama_index.core.agent.workflow import AgentStream, ToolCallResult
from llama_index.core.memory import Memory
from llama_index.core.tools import FunctionTool

from onegen_integrations.llama_index import OneGenAgent
from onegen_integrations.model import OneGenModel

sys.path.insert(0, str(Path(__file__).parent))
from example_tools import calculate, get_order_status
from llama_index_rag import conversation_arguments, demo_index, load_example_model

CONVERSATION = [
    "Who founded the Varenne Institute?",
    "Where was she born?",
    "What is 17 times 23?",
    "Where is my order A-1017?",
    "And order B-2093?",
]
TOOLS = [FunctionTool.from_defaults(fn=calculate), FunctionTool.from_defaults(fn=get_order_status)]


async def converse(agent: OneGenAgent, messages: list[str]) -> None:
    """Run `messages` as one conversation, printing the answer as it streams, each tool call and each source."""
    memory = Memory.from_defaults(session_id="demo")  # the conversation, from one run to the next
    for message in messages:
        print(f"you> {message}\nbot> ", end="", flush=True)
        handler = agent.run(user_msg=message, memory=memory)
        async for event in handler.stream_events():
            if isinstance(event, AgentStream):
                print(event.delta, end="", flush=True)
            elif isinstance(event, ToolCallResult):
                print(f"\n  tool: {event.tool_name}({json.dumps(event.tool_kwargs)}) -> {event.tool_output.content}")
                print("bot> ", end="", flush=True)
        result = await handler
        print()
        for node in result.raw.source_nodes:
            print(f"  source: {node.node.metadata.get('title', node.node.node_id)}")


def main(argv: list[str] | None = None, model: OneGenModel | None = None) -> None:
    """Run the example; `model` skips loading one (tests pass the one they hold)."""
    args = conversation_arguments(__doc__.splitlines()[0], argv)

    index = demo_index(load_example_model(args.model, model), "llama-index-agent")
    agent = OneGenAgent.from_index(index, tools=TOOLS, max_new_tokens=args.max_new_tokens)
    lines = Path(args.script).read_text().splitlines() if args.script else CONVERSATION
    asyncio.run(converse(agent, [line.strip() for line in lines if line.strip()]))


if __name__ == "__main__":
    main()
