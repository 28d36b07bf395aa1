"""OneGenAgent: a LlamaIndex workflow agent whose step is one pass of the engine."""

from __future__ import annotations

import json

import pytest
from llama_index.core.agent.workflow import AgentOutput, AgentStream, AgentWorkflow
from llama_index.core.memory import ChatMemoryBuffer, Memory
from llama_index.core.workflow import Context

from onegen_integrations.llama_index import OneGenAgent
from onegen_integrations.replay import RETRIEVALS_KEY

QUESTION = "Who founded the Varenne Institute?"
FOLLOW_UP = "Where was she born?"

# LlamaIndex warns each time it leaves the memory out of a serialised context (see OneGenAgent._init_context).
pytestmark = pytest.mark.filterwarnings("ignore::workflows.context.state_store.UnserializableKeyWarning")


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


@pytest.mark.asyncio
async def test_one_agent_serving_two_contexts_feeds_each_conversation_with_its_passages(index):
    shared = OneGenAgent.from_index(index, max_new_tokens=4)
    contexts = [Context(shared), Context(shared)]
    openings = [QUESTION, "Who designed the Kestrel Bridge?"]
    for ctx, opening in zip(contexts, openings):
        await shared.run(user_msg=opening, ctx=ctx)
    for ctx, opening in zip(contexts, openings):
        live = OneGenAgent.from_index(index, max_new_tokens=4)
        live_ctx = Context(live)
        await live.run(user_msg=opening, ctx=live_ctx)
        expected = await live.run(user_msg=FOLLOW_UP, ctx=live_ctx)
        result = await shared.run(user_msg=FOLLOW_UP, ctx=ctx)  # its cache holds the other conversation
        assert shared.chat_engine.session.messages[0]["content"] == opening
        assert shared.chat_engine.session.token_ids == live.chat_engine.session.token_ids
        assert result.response.content == expected.response.content
        memory = await ctx.store.get("memory")
        assert memory.get_all()[-1].additional_kwargs[RETRIEVALS_KEY] == result.raw.metadata[RETRIEVALS_KEY]


@pytest.mark.asyncio
async def test_runs_on_one_context_keep_the_conversation(index):
    agent = OneGenAgent.from_index(index, max_new_tokens=4)
    ctx = Context(agent)
    first = await agent.run(user_msg=QUESTION, ctx=ctx)
    session = agent.chat_engine.session
    await agent.run(user_msg=FOLLOW_UP, ctx=ctx)
    memory = await ctx.store.get("memory")
    assert [m.content for m in memory.get_all()][:3] == [QUESTION, first.response.content, FOLLOW_UP]
    assert agent.chat_engine.session is session  # the cache held the history: nothing fed again


@pytest.mark.asyncio
async def test_a_context_restored_in_a_new_agent_holds_the_live_cache(index):
    live = OneGenAgent.from_index(index, max_new_tokens=4)
    ctx = Context(live)
    await live.run(user_msg=QUESTION, ctx=ctx)
    saved = json.dumps(ctx.to_dict())  # e.g. kept between requests, or in another process
    restarted = OneGenAgent.from_index(index, max_new_tokens=4)
    result = await restarted.run(user_msg=FOLLOW_UP, ctx=Context.from_dict(restarted, json.loads(saved)))
    expected = await live.run(user_msg=FOLLOW_UP, ctx=ctx)
    assert [m["content"] for m in restarted.chat_engine.session.messages][::2] == [QUESTION, FOLLOW_UP]
    assert restarted.chat_engine.session.token_ids == live.chat_engine.session.token_ids
    assert result.response.content == expected.response.content


@pytest.mark.asyncio
async def test_a_new_agent_on_a_stored_memory_holds_the_live_cache(index, tmp_path):
    database = f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}"
    live = OneGenAgent.from_index(index, max_new_tokens=4)
    await live.run(user_msg=QUESTION, memory=Memory.from_defaults(session_id="u1", async_database_uri=database))
    restarted = OneGenAgent.from_index(index, max_new_tokens=4)  # e.g. another worker process
    memory = Memory.from_defaults(session_id="u1", async_database_uri=database)
    result = await restarted.run(user_msg=FOLLOW_UP, memory=memory)
    expected = live.chat_engine.chat(FOLLOW_UP)
    assert restarted.chat_engine.session.token_ids == live.chat_engine.session.token_ids
    assert result.response.content == expected.response
