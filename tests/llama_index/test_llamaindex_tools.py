"""Tool calling in LlamaIndex: OneGenLLM as a FunctionCallingLLM, FunctionAgent, OneGenAgent(tools=...).

A random tiny model calls no tool by itself, so `Scripted` makes it write given answers token by
token; forced prefixes (`tool_required`, `tool_choice`) are the engine's own. The tests at the end
run on a tool-trained model (`$ONEGEN_TOOL_MODEL`, marker `default_model`) and skip without one.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
import torch
from llama_index.core import VectorStoreIndex
from llama_index.core.agent.workflow import (
    AgentOutput,
    AgentStream,
    AgentWorkflow,
    CodeActAgent,
    FunctionAgent,
    ReActAgent,
    ToolCallResult,
)
from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context

from onegen_integrations.errors import NoToolCallError, UnsupportedFrameworkError
from onegen_integrations.llama_index import OneGenAgent, OneGenLLM
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.llama_index.tool_calls import INVALID_CALLS_KEY
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY
from onegen_integrations.tools import ToolCall, ToolFormatError, ToolSpec, calls_text, results_text, tools_prompt

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
from example_tools import ORDERS, calculate
from llama_index_agent import TOOLS as DEFAULT_TOOLS
from llama_index_rag import demo_index as example_demo_index

# LlamaIndex warns each time it leaves the memory out of a serialised context (see OneGenAgent._init_context).
pytestmark = pytest.mark.filterwarnings("ignore::workflows.context.state_store.UnserializableKeyWarning")

SHOP = {"1042": "shipped on 2 May, arriving 5 May"}


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def order_status(order_id: str) -> str:
    """Where an order is, by its number."""
    return SHOP.get(order_id, "no such order")


TOOLS = [FunctionTool.from_defaults(fn=add), FunctionTool.from_defaults(fn=order_status)]
ADD = ToolCall("add", {"a": 2, "b": 3})
QUESTION = "What is 2 plus 3?"


class Scripted:
    """A logits processor that makes the model write each answer given, once, in order, then
    lets it write on its own. A turn follows the next answer while its text so far (forced
    prefix included, `[RQ]` left out) is the start of it."""

    def __init__(self, model: OneGenModel, *answers: str) -> None:
        self.model = model
        self.answers = list(answers)

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        ids = [t for t in generated if t != self.model.query_token_id]
        text = self.model.tokenizer.decode(ids, skip_special_tokens=True)
        if not self.answers or not self.answers[0].startswith(text):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        if text == self.answers[0]:
            self.answers.pop(0)
            forced[self.model.tokenizer.eos_token_id] = 0.0
        else:
            forced[self.model.tokenize(self.answers[0][len(text) :])[0]] = 0.0
        return forced


def scripted_llm(model: OneGenModel, *answers: str, max_new_tokens: int = 48) -> OneGenLLM:
    return OneGenLLM(model, max_new_tokens=max_new_tokens, logits_processor=Scripted(model, *answers))


async def run_events(agent, **kwargs) -> tuple[list, AgentOutput]:
    handler = agent.run(**kwargs)
    events = [event async for event in handler.stream_events()]
    return events, await handler


# OneGenLLM as a FunctionCallingLLM


def test_it_is_a_function_calling_llm(model):
    llm = OneGenLLM(model)
    assert isinstance(llm, FunctionCallingLLM) and llm.metadata.is_function_calling_model


def test_prepare_chat_with_tools_gives_the_chat_arguments(model):
    history = [ChatMessage(role="system", content="Be brief.")]
    kwargs = OneGenLLM(model)._prepare_chat_with_tools(
        TOOLS, user_msg=QUESTION, chat_history=history, tool_required=True
    )
    assert [m.content for m in kwargs["messages"]] == ["Be brief.", QUESTION]
    assert [spec.name for spec in kwargs["tools"]] == ["add", "order_status"]
    assert kwargs["tools"][0].parameters["required"] == ["a", "b"]
    assert kwargs["tool_required"] is True and kwargs["allow_parallel_tool_calls"] is False


def test_the_tools_are_described_in_the_system_prompt(model):
    response = OneGenLLM(model, max_new_tokens=6).chat_with_tools(TOOLS, user_msg=QUESTION)
    specs = [ToolSpec.from_openai(tool.metadata.to_openai_tool()) for tool in TOOLS]
    system_prompt = tools_prompt(model.config.system_prompt, specs)
    expected = model.session(system_prompt=system_prompt, retrieval="never", max_new_tokens=6).ask(QUESTION)
    assert response.raw["usage"]["prompt_tokens"] == expected.usage.prompt_tokens
    assert response.message.content == expected.text


def test_a_call_comes_back_as_a_tool_call_block_without_its_text(model):
    llm = scripted_llm(model, "Adding." + ADD.text())
    response = llm.chat_with_tools(TOOLS, user_msg=QUESTION)
    assert response.message.content == "Adding."
    [block] = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
    [selection] = llm.get_tool_calls_from_response(response)
    assert (block.tool_name, block.tool_kwargs) == ("add", {"a": 2, "b": 3})
    assert (selection.tool_id, selection.tool_name, selection.tool_kwargs) == (block.tool_call_id, "add", ADD.arguments)
    [openai_shape] = response.message.additional_kwargs["tool_calls"]  # where older LlamaIndex code looks
    assert openai_shape["function"] == {"name": "add", "arguments": json.dumps(ADD.arguments)}


def test_streamed_deltas_never_hold_call_text(model):
    llm = scripted_llm(model, "Adding." + ADD.text())
    chunks = list(llm.stream_chat_with_tools(TOOLS, user_msg=QUESTION))
    assert "".join(c.delta for c in chunks) == chunks[-1].message.content == "Adding."
    first_seen = next(c for c in chunks if llm.get_tool_calls_from_response(c, error_on_no_tool_call=False))
    assert first_seen.delta == ""
    assert llm.get_tool_calls_from_response(first_seen) == llm.get_tool_calls_from_response(chunks[-1])
    assert chunks[-1].raw["finish_reason"] == "eos"


def test_an_answer_without_a_call_is_an_error_only_where_one_is_expected(model):
    llm = scripted_llm(model, "Five.")
    response = llm.chat_with_tools(TOOLS, user_msg=QUESTION)
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    with pytest.raises(NoToolCallError, match="tool_required=True"):
        llm.get_tool_calls_from_response(response)


def test_tool_required_makes_the_answer_open_a_call_of_the_only_tool(model):
    llm = OneGenLLM(model, max_new_tokens=24)  # the forced opening, then a random model does not close the call
    response = llm.chat_with_tools(TOOLS[:1], user_msg=QUESTION, tool_required=True)
    [invalid] = response.message.additional_kwargs[INVALID_CALLS_KEY]
    assert invalid["text"].startswith('{"name": "add", "arguments":')
    with pytest.raises(NoToolCallError, match=r"does not parse \(the call was cut off"):
        llm.get_tool_calls_from_response(response)


def test_tool_choice_names_the_tool_to_call(model):
    llm = scripted_llm(model, '<tool_call>{"name": "order_status", "arguments": {"order_id": "1042"}}</tool_call>')
    response = llm.chat_with_tools(TOOLS, user_msg="Where is order 1042?", tool_choice="order_status")
    assert [(s.tool_name, s.tool_kwargs) for s in llm.get_tool_calls_from_response(response)] == [
        ("order_status", {"order_id": "1042"})
    ]
    with pytest.raises(ToolFormatError, match="names no offered tool"):
        llm.chat_with_tools(TOOLS, user_msg=QUESTION, tool_choice="weather")


def test_only_the_first_call_counts_unless_parallel_calls_are_allowed(model):
    two = ADD.text() + ToolCall("order_status", {"order_id": "1042"}).text()
    llm = scripted_llm(model, two, two, max_new_tokens=64)
    single = llm.chat_with_tools(TOOLS, user_msg=QUESTION)
    parallel = llm.chat_with_tools(TOOLS, user_msg=QUESTION, allow_parallel_tool_calls=True)
    assert [s.tool_name for s in llm.get_tool_calls_from_response(single)] == ["add"]
    assert [s.tool_name for s in llm.get_tool_calls_from_response(parallel)] == ["add", "order_status"]


def test_calls_and_results_in_the_history_are_fed_as_the_model_writes_them():
    call = ToolCallBlock(tool_call_id="c1", tool_name="add", tool_kwargs={"a": 2, "b": 3})
    other = ToolCallBlock(tool_call_id="c2", tool_name="order_status", tool_kwargs='{"order_id": "1042"}')
    messages = [
        ChatMessage(role="user", content=QUESTION),
        ChatMessage(role="assistant", blocks=[call, other]),
        ChatMessage(role="tool", content="5", additional_kwargs={"tool_call_id": "c1"}),
        ChatMessage(role="tool", content=SHOP["1042"], additional_kwargs={"tool_call_id": "c2"}),
    ]
    dialogue = to_dialogue(messages)
    written = calls_text("", [ADD, ToolCall("order_status", {"order_id": "1042"})])
    assert dialogue.history == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": written}]
    assert dialogue.message == results_text([("5", "add"), (SHOP["1042"], "order_status")])


def test_predict_and_call_runs_the_called_tool(model):
    assert str(scripted_llm(model, ADD.text()).predict_and_call(TOOLS, user_msg=QUESTION)) == "5"


class Song(BaseModel):
    title: str
    year: int


def test_structured_predict_fills_the_class_through_a_forced_call(model):
    answer = '<tool_call>{"name": "Song", "arguments": {"title": "Blue", "year": 1999}}</tool_call>'
    llm = scripted_llm(model, answer, answer, answer)
    assert llm.structured_predict(Song, PromptTemplate("Name a song.")) == Song(title="Blue", year=1999)
    response = llm.as_structured_llm(Song).chat([ChatMessage(role="user", content="Name a song.")])
    assert json.loads(response.message.content) == {"title": "Blue", "year": 1999}
    *_, streamed = llm.stream_structured_predict(Song, PromptTemplate("Name a song."))
    assert (streamed.title, streamed.year) == ("Blue", 1999)


def test_structured_predict_that_gets_no_valid_call_says_why(model):
    with pytest.raises(NoToolCallError, match="does not parse"):
        OneGenLLM(model, max_new_tokens=24).structured_predict(Song, PromptTemplate("Name a song."))


# Agents on OneGenLLM


@pytest.mark.asyncio
async def test_a_function_agent_calls_the_tool_and_reads_its_result_over_the_same_cache(model):
    llm = scripted_llm(model, ADD.text(), "It is 5.")
    events, result = await run_events(FunctionAgent(llm=llm, tools=TOOLS), user_msg=QUESTION)
    [called] = [e for e in events if isinstance(e, ToolCallResult)]
    assert (called.tool_name, called.tool_kwargs, called.tool_output.content) == ("add", ADD.arguments, "5")
    assert result.response.content == "It is 5."
    first, second = [e.raw["usage"] for e in events if isinstance(e, AgentOutput)]
    assert second["cached_tokens"] == first["processed_tokens"]  # the first step's cache, nothing fed again
    assert second["rebuilt_tokens"] == 0 and second["prompt_tokens"] < first["prompt_tokens"] / 4


@pytest.mark.asyncio
async def test_a_cached_step_answers_as_a_new_session_would(model):
    llm = scripted_llm(model, ADD.text())  # then the model writes on its own
    agent = FunctionAgent(llm=llm, tools=TOOLS)
    ctx = Context(agent)
    events, result = await run_events(agent, user_msg=QUESTION, ctx=ctx)
    memory = await ctx.store.get("memory")
    fresh = OneGenLLM(model, max_new_tokens=48).chat(memory.get_all()[:-1], tools=TOOLS)
    cached = [e.raw["usage"] for e in events if isinstance(e, AgentOutput)][-1]
    assert result.response.content == fresh.message.content
    assert cached["cached_tokens"] + cached["prompt_tokens"] == fresh.raw["usage"]["prompt_tokens"]


@pytest.mark.asyncio
async def test_a_function_agent_streams_text_but_no_call_text(model):
    llm = scripted_llm(model, "Adding." + ADD.text(), "It is 5.")
    events, _ = await run_events(FunctionAgent(llm=llm, tools=TOOLS), user_msg=QUESTION)
    deltas = [e.delta for e in events if isinstance(e, AgentStream)]
    assert "".join(deltas) == "Adding.It is 5."
    assert [s.tool_name for e in events if isinstance(e, AgentStream) for s in e.tool_calls][-1] == "add"


@pytest.mark.asyncio
async def test_a_react_agent_is_refused_with_what_to_use_instead(model):
    agent = ReActAgent(llm=OneGenLLM(model, max_new_tokens=4), tools=TOOLS)
    with pytest.raises(UnsupportedFrameworkError, match=r"ReActAgent.*FunctionAgent\(llm=OneGenLLM"):
        await agent.run(user_msg=QUESTION)


@pytest.mark.asyncio
async def test_a_code_act_agent_is_refused_with_what_to_use_instead(model):
    agent = CodeActAgent(code_execute_fn=lambda code: "", llm=OneGenLLM(model, max_new_tokens=4), tools=TOOLS)
    with pytest.raises(UnsupportedFrameworkError, match=r"CodeActAgent.*OneGenAgent"):
        await agent.run(user_msg=QUESTION)


def test_an_agent_workflow_from_tools_picks_a_function_agent(model):
    workflow = AgentWorkflow.from_tools_or_functions(TOOLS, llm=OneGenLLM(model))
    assert all(type(agent) is FunctionAgent for agent in workflow.agents.values())


# OneGenAgent with tools


@pytest.mark.asyncio
async def test_onegen_agent_retrieves_in_the_pass_and_calls_tools_over_one_cache(index, model):
    script = Scripted(model, ToolCall("order_status", {"order_id": "1042"}).text(), "Shipped.")
    agent = OneGenAgent.from_index(index, tools=TOOLS, max_new_tokens=48, logits_processor=script)
    events, result = await run_events(agent, user_msg="Where is order 1042?")
    [called] = [e for e in events if isinstance(e, ToolCallResult)]
    assert called.tool_output.content == SHOP["1042"]
    steps = [e for e in events if isinstance(e, AgentOutput)]
    assert [len(s.raw.source_nodes) for s in steps] == [1, 1]  # an untrained model retrieves at each start
    assert steps[1].raw.metadata["usage"]["cached_tokens"] == steps[0].raw.metadata["usage"]["processed_tokens"]
    assert result.response.content == "Shipped."
    assert "".join(e.delta for e in events if isinstance(e, AgentStream)) == "Shipped."


@pytest.mark.asyncio
async def test_onegen_agent_forces_its_initial_tool_choice(index, model):
    agent = OneGenAgent.from_index(index, tools=TOOLS, initial_tool_choice="add", max_new_tokens=24)
    result = await agent.run(user_msg=QUESTION)  # a random model does not close the call
    [invalid] = result.response.additional_kwargs[INVALID_CALLS_KEY]
    assert invalid["text"].startswith('{"name": "add", "arguments":')


@pytest.mark.asyncio
async def test_a_context_restored_after_tool_calls_holds_the_live_cache(index, model):
    turns = [ToolCall("order_status", {"order_id": "1042"}).text(), "Shipped."]
    live = OneGenAgent.from_index(index, tools=TOOLS, max_new_tokens=48, logits_processor=Scripted(model, *turns))
    ctx = Context(live)
    await live.run(user_msg="Where is order 1042?", ctx=ctx)
    saved = json.dumps(ctx.to_dict())
    restarted = OneGenAgent.from_index(index, tools=TOOLS, max_new_tokens=48)
    result = await restarted.run(user_msg="And order 7?", ctx=Context.from_dict(restarted, json.loads(saved)))
    expected = await live.run(user_msg="And order 7?", ctx=ctx)
    assert restarted.chat_engine.session.token_ids == live.chat_engine.session.token_ids
    assert result.response.content == expected.response.content


# On the default model (trained for tool calls)


@pytest.fixture(scope="module")
def demo_index(tool_model) -> VectorStoreIndex:
    """The demo corpus embedded by the tool-trained model, in a fresh in-memory collection."""
    return example_demo_index(tool_model, f"tools-{uuid.uuid4().hex[:8]}")


def called(events: list) -> list[tuple[str, dict]]:
    return [(e.tool_name, e.tool_kwargs) for e in events if isinstance(e, ToolCallResult)]


@pytest.mark.default_model
@pytest.mark.asyncio
async def test_default_function_agent_calls_the_tool_a_turn_needs_and_again_on_a_follow_up(tool_model):
    agent = FunctionAgent(llm=OneGenLLM(tool_model, max_new_tokens=64), tools=DEFAULT_TOOLS)
    ctx = Context(agent)
    events, result = await run_events(agent, user_msg="Where is my order A-1017?", ctx=ctx)
    assert called(events) == [("get_order_status", {"order_id": "A-1017"})]
    assert ORDERS["A-1017"]["status"] in result.response.content
    events, result = await run_events(agent, user_msg="And order B-2093?", ctx=ctx)
    assert called(events) == [("get_order_status", {"order_id": "B-2093"})]
    assert ORDERS["B-2093"]["status"] in result.response.content


@pytest.mark.default_model
@pytest.mark.asyncio
async def test_default_agent_calls_a_tool_for_arithmetic(demo_index):
    agent = OneGenAgent.from_index(demo_index, tools=DEFAULT_TOOLS, max_new_tokens=64)
    events, result = await run_events(agent, user_msg="What is 17 times 23?")
    [(name, arguments)] = called(events)
    assert name == "calculate" and calculate(arguments["expression"]) == "391"
    assert "391" in result.response.content


@pytest.mark.default_model
@pytest.mark.asyncio
async def test_default_agent_answers_a_document_question_by_retrieving_in_the_pass(demo_index):
    agent = OneGenAgent.from_index(demo_index, tools=DEFAULT_TOOLS, max_new_tokens=64)
    events, result = await run_events(agent, user_msg="Who founded the Varenne Institute?")
    assert called(events) == []
    assert result.raw.metadata[RETRIEVALS_KEY] and "Marchetti" in result.response.content
    deltas = [e.delta for e in events if isinstance(e, AgentStream)]
    assert len([d for d in deltas if d]) > 3 and "".join(deltas) == result.response.content


@pytest.mark.default_model
@pytest.mark.asyncio
async def test_default_agent_follows_up_from_the_history(demo_index):
    agent = OneGenAgent.from_index(demo_index, tools=DEFAULT_TOOLS, max_new_tokens=64)
    ctx = Context(agent)
    await agent.run(user_msg="Who founded the Varenne Institute?", ctx=ctx)
    events, result = await run_events(agent, user_msg="Where was she born?", ctx=ctx)
    assert called(events) == []
    assert "Selbrook" in result.response.content
