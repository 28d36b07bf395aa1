"""OneGenAgent: a LlamaIndex workflow agent whose step is one pass of the engine."""

from __future__ import annotations

import pytest
from llama_index.core.agent.workflow import AgentOutput, AgentStream, AgentWorkflow
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.tools import FunctionTool

from onegen_integrations.llama_index import OneGenAgent

QUESTION = "Who founded the Varenne Institute?"


@pytest.mark.asyncio
async def test_a_run_streams_the_answer_and_returns_its_sources(index):
    agent = OneGenAgent.from_index(index, max_new_tokens=6)
    handler = agent.run(user_msg=QUESTION)
    deltas = [event.delta async for event in handler.stream_events() if isinstance(event, AgentStream)]
    result = await handler
    assert isinstance(result, AgentOutput)
    assert "".join(deltas) == result.response.content
    assert len(result.raw.source_nodes) == 1


@pytest.mark.asyncio
async def test_runs_with_one_memory_share_the_cache(index):
    agent = OneGenAgent.from_index(index, max_new_tokens=4)
    memory = ChatMemoryBuffer.from_defaults()
    first = await agent.run(user_msg=QUESTION, memory=memory)
    session = agent.chat_engine.session
    held = list(session.token_ids)
    await agent.run(user_msg="Where was she born?", memory=memory)
    assert agent.chat_engine.session is session
    assert session.token_ids[: len(held)] == held
    assert session.messages[1]["content"] == first.response.content


@pytest.mark.asyncio
async def test_it_answers_inside_an_agent_workflow(index):
    agent = OneGenAgent.from_index(index, max_new_tokens=4)
    result = await AgentWorkflow(agents=[agent], root_agent=agent.name).run(user_msg=QUESTION)
    assert result.current_agent_name == agent.name
    assert len(result.raw.source_nodes) == 1


def test_tools_are_refused_with_a_way_out(index):
    tool = FunctionTool.from_defaults(fn=lambda: "x", name="noop", description="Does nothing.")
    with pytest.raises(ValueError, match="FunctionAgent"):
        OneGenAgent.from_index(index, tools=[tool])
