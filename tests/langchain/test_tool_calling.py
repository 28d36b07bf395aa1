"""ChatOneGen's tool calling: tools offered in the system prompt, calls parsed out of the answer,
results fed back into the same cache, tool_choice forced by the answer's start.

A random tiny model writes no calls by itself: `ScriptedAnswers` makes it write given text, so
parsing and streaming are checked on exactly what a model would produce.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from onegen_integrations.errors import UnsupportedFrameworkError
from onegen_integrations.langchain import ChatOneGen
from onegen_integrations.langchain.messages import to_dialogue
from onegen_integrations.model import OneGenModel
from onegen_integrations.tools import ToolFormatError, ToolSpec, forced_prefix, result_text, tools_prompt
from tests.langchain.probes import ScriptedAnswers, count_calls


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def order_status(order_id: str) -> str:
    """The delivery status of an order."""
    return "shipped"


ADD_SPEC = ToolSpec.from_openai(convert_to_openai_tool(add))
CALL = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 2}}</tool_call>'
"""A call of `add` exactly as the format writes it (`ToolCall.text()`)."""


def scripted(model: OneGenModel, *answers: str, max_tokens: int = 48, **fields: object) -> ChatOneGen:
    """A chat model whose answers are `answers`, in turn."""
    return ChatOneGen(
        onegen_model=model, max_tokens=max_tokens, logits_processor=ScriptedAnswers(model, *answers), **fields
    )


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


def fed_text(model: OneGenModel, forwards: list[tuple]) -> str:
    """What the model was fed, as text (special tokens included)."""
    return model.tokenizer.decode([t for ids, *_ in forwards for t in ids])


def test_bound_tools_are_offered_in_the_system_prompt_after_the_models_own(tiny_model: OneGenModel) -> None:
    forwards = count_calls(tiny_model, "forward")
    ChatOneGen(onegen_model=tiny_model, max_tokens=2).bind_tools([add]).invoke("What is 2 + 2?")
    offered = tools_prompt(tiny_model.config.system_prompt, [ADD_SPEC])
    assert offered is not None and offered in fed_text(tiny_model, forwards)


def test_a_conversations_system_message_is_the_prompt_the_tools_follow(tiny_model: OneGenModel) -> None:
    forwards = count_calls(tiny_model, "forward")
    chat = ChatOneGen(onegen_model=tiny_model, max_tokens=2).bind_tools([add])
    chat.invoke([SystemMessage("Be brief."), HumanMessage("What is 2 + 2?")])
    assert tools_prompt("Be brief.", [ADD_SPEC]) in fed_text(tiny_model, forwards)


def test_tool_choice_none_offers_no_tools_and_parses_no_calls(tiny_model: OneGenModel) -> None:
    forwards = count_calls(tiny_model, "forward")
    chat = scripted(tiny_model, CALL).bind_tools([add], tool_choice="none")
    answer = chat.invoke("What is 2 + 2?")
    assert "<tools>" not in fed_text(tiny_model, forwards)
    assert answer.content == CALL and answer.tool_calls == []


def test_a_call_the_model_writes_is_a_tool_call_and_only_the_text_around_it_is_content(
    tiny_model: OneGenModel,
) -> None:
    answer = scripted(tiny_model, "Let me add." + CALL).bind_tools([add]).invoke("What is 2 + 2?")
    assert answer.content == "Let me add."
    assert [{**call, "id": None} for call in answer.tool_calls] == [
        {"name": "add", "args": {"a": 2, "b": 2}, "id": None, "type": "tool_call"}
    ]
    assert answer.tool_calls[0]["id"].startswith("call_")
    assert answer.response_metadata["finish_reason"] == "stop"


def test_streaming_shows_no_call_text_and_gives_each_call_as_one_tool_call_chunk_indexed_by_its_block(
    tiny_model: OneGenModel,
) -> None:
    second = '<tool_call>{"name": "order_status", "arguments": {"order_id": "A-17"}}</tool_call>'
    chat = scripted(tiny_model, "Checking." + CALL + "\n" + second, max_tokens=96)
    chunks = list(chat.bind_tools([add, order_status]).stream("Add 2 and 2, and find order A-17."))
    assert "".join(chunk.text for chunk in chunks) == "Checking."
    calls = [chunk.tool_call_chunks for chunk in chunks if chunk.tool_call_chunks]
    assert [[{**c, "id": None} for c in call] for call in calls] == [
        [{"name": "add", "args": json.dumps({"a": 2, "b": 2}), "id": None, "index": 1, "type": "tool_call_chunk"}],
        [
            {
                "name": "order_status",
                "args": json.dumps({"order_id": "A-17"}),
                "id": None,
                "index": 2,
                "type": "tool_call_chunk",
            }
        ],
    ]
    total = merged(chunks)
    assert [(call["name"], call["args"]) for call in total.tool_calls] == [
        ("add", {"a": 2, "b": 2}),
        ("order_status", {"order_id": "A-17"}),
    ]
    assert total.chunk_position == "last" and total.usage_metadata is not None


def test_v1_content_blocks_keep_the_text_and_the_call_apart_when_streamed(tiny_model: OneGenModel) -> None:
    chat = scripted(tiny_model, "Checking." + CALL, output_version="v1").bind_tools([add])
    blocks = merged(list(chat.stream("What is 2 + 2?"))).content_blocks
    assert [(block["type"], block.get("text") or block.get("args")) for block in blocks] == [
        ("text", "Checking."),
        ("tool_call", {"a": 2, "b": 2}),
    ]


def test_a_call_that_is_not_valid_json_or_is_cut_off_is_an_invalid_tool_call(tiny_model: OneGenModel) -> None:
    bad = '<tool_call>{"name": "add", "arguments": [2, 2]}</tool_call>'
    answer = scripted(tiny_model, bad).bind_tools([add]).invoke("What is 2 + 2?")
    assert answer.tool_calls == []
    assert [call["args"] for call in answer.invalid_tool_calls] == [bad]
    cut = scripted(tiny_model, CALL, max_tokens=8).bind_tools([add]).invoke("What is 2 + 2?")
    assert cut.tool_calls == [] and cut.invalid_tool_calls[0]["args"].startswith("<tool_call>{")
    assert cut.response_metadata["finish_reason"] == "length"


def test_a_required_call_of_one_named_tool_is_forced_by_the_start_of_the_answer(tiny_model: OneGenModel) -> None:
    chat = ChatOneGen(onegen_model=tiny_model, max_tokens=20)
    specs = [ADD_SPEC, ToolSpec.from_openai(convert_to_openai_tool(order_status))]
    named = {"type": "function", "function": {"name": "order_status"}}
    for tools, tool_choice, expected in [
        ([add, order_status], "required", forced_prefix("required", specs)),
        ([add, order_status], named, forced_prefix("order_status", specs)),
        ([add, order_status], "order_status", forced_prefix("order_status", specs)),
        ([add], "any", forced_prefix("add", specs)),  # the only tool: the call is named
        ([add], True, forced_prefix("add", specs)),
    ]:
        answer = chat.bind_tools(tools, tool_choice=tool_choice).invoke("Hello")
        written = [call["args"] for call in answer.invalid_tool_calls]  # a random model writes no valid call
        assert written and written[0].startswith(expected), tool_choice
        assert answer.content == ""


def test_a_forced_call_the_model_completes_is_a_tool_call(tiny_model: OneGenModel) -> None:
    answer = scripted(tiny_model, CALL).bind_tools([add, order_status], tool_choice="add").invoke("2 + 2?")
    assert [(call["name"], call["args"]) for call in answer.tool_calls] == [("add", {"a": 2, "b": 2})]


def test_a_tool_choice_naming_no_bound_tool_is_refused_when_binding(tiny_model: OneGenModel) -> None:
    chat = ChatOneGen(onegen_model=tiny_model)
    with pytest.raises(ToolFormatError, match=r"names no offered tool \(offered: add\)"):
        chat.bind_tools([add], tool_choice="multiply")
    with pytest.raises(ToolFormatError, match="not understood"):
        chat.bind_tools([add], tool_choice={"type": "tool", "name": "add"})


def test_two_tools_of_one_name_are_refused_when_offered(tiny_model: OneGenModel) -> None:
    chat = ChatOneGen(onegen_model=tiny_model, max_tokens=2).bind_tools([add, add])
    with pytest.raises(ToolFormatError, match="two tools share a name"):
        chat.invoke("Hello")


def test_a_call_in_history_is_the_assistant_text_and_tool_results_are_one_user_turn() -> None:
    calls = [
        {"name": "add", "args": {"a": 2, "b": 2}, "id": "c1"},
        {"name": "order_status", "args": {"order_id": "A-17"}, "id": "c2"},
    ]
    dialogue = to_dialogue(
        [
            HumanMessage("Add 2 and 2, and find order A-17."),
            AIMessage("Checking.", tool_calls=calls),
            ToolMessage("4", tool_call_id="c1"),
            ToolMessage("shipped", tool_call_id="c2", name="order_status"),
        ]
    )
    assert dialogue.history[1]["content"] == (
        'Checking.<tool_call>{"name": "add", "arguments": {"a": 2, "b": 2}}</tool_call>'
        '<tool_call>{"name": "order_status", "arguments": {"order_id": "A-17"}}</tool_call>'
    )
    assert dialogue.message == result_text("4", "add") + "\n\n" + result_text("shipped", "order_status")


def test_tool_use_blocks_that_repeat_an_ai_messages_calls_are_accepted() -> None:
    content = [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "c1", "name": "add", "input": {}}]
    message = AIMessage(content, tool_calls=[{"name": "add", "args": {}, "id": "c1"}])
    dialogue = to_dialogue([HumanMessage("Add."), message, ToolMessage("0", tool_call_id="c1")])
    assert dialogue.history[1]["content"] == 'Checking.<tool_call>{"name": "add", "arguments": {}}</tool_call>'


def test_sending_the_history_back_with_tool_results_feeds_only_the_new_tokens(tiny_model: OneGenModel) -> None:
    question = HumanMessage("What is 2 + 2?")
    cached = scripted(tiny_model, CALL, "It is 4.").bind_tools([add])
    call = cached.invoke([question])
    result = add.invoke(call.tool_calls[0])
    forwards = count_calls(tiny_model, "forward")
    answer = cached.invoke([question, call, result])
    fed = sum(len(ids) for ids, *_ in forwards)
    usage = answer.usage_metadata
    assert usage is not None and usage["input_token_details"]["cache_read"] > 0
    # What was not in the cache, and the answer (its last token is fed with the next message).
    assert fed == usage["input_tokens"] - usage["input_token_details"]["cache_read"] + usage["output_tokens"] - 1

    rebuilt = scripted(tiny_model, "It is 4.", cached_conversations=0).bind_tools([add])
    again = rebuilt.invoke([question, call, result])
    assert again.content == answer.content == "It is 4."
    assert again.usage_metadata is not None and again.usage_metadata["input_token_details"]["cache_read"] == 0
    assert again.usage_metadata["input_tokens"] == usage["input_tokens"]


def test_async_calls_and_streams_give_the_same_calls(tiny_model: OneGenModel) -> None:
    chat = scripted(tiny_model, CALL).bind_tools([add])

    async def both() -> tuple[AIMessage, list[AIMessageChunk]]:
        return await chat.ainvoke("2 + 2?"), [chunk async for chunk in chat.astream("2 + 2?")]

    answer, chunks = asyncio.run(both())
    expected = [("add", {"a": 2, "b": 2})]
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == expected
    assert [(c["name"], c["args"]) for c in merged(chunks).tool_calls] == expected


class Person(BaseModel):
    """A person."""

    name: str
    age: int


def test_structured_output_is_a_forced_call_of_the_schemas_tool(tiny_model: OneGenModel) -> None:
    call = '<tool_call>{"name": "Person", "arguments": {"name": "Ada", "age": 36}}</tool_call>'
    chat = scripted(tiny_model, call)
    assert chat.with_structured_output(Person).invoke("Who wrote the first program?") == Person(name="Ada", age=36)


def test_json_mode_is_refused_naming_structured_output_instead(tiny_model: OneGenModel) -> None:
    chat = ChatOneGen(onegen_model=tiny_model, max_tokens=2)
    with pytest.raises(UnsupportedFrameworkError, match=r"no JSON mode .*with_structured_output\(schema\)"):
        chat.invoke("Hello", response_format={"type": "json_object"})


def test_a_text_react_agents_call_is_refused_naming_create_agent(tiny_model: OneGenModel) -> None:
    # langchain-classic's create_react_agent binds this stop sequence to the model it is given.
    react = ChatOneGen(onegen_model=tiny_model, max_tokens=2).bind(stop=["\nObservation"])
    with pytest.raises(UnsupportedFrameworkError, match=r"create_agent\(ChatOneGen\(...\), tools=\[...\]\)"):
        react.invoke("Answer the question using the tools.\nQuestion: What is 2 + 2?\nThought:")


def test_tools_cannot_be_offered_over_a_session_a_chain_passes(tiny_model: OneGenModel) -> None:
    chat = ChatOneGen(onegen_model=tiny_model, max_tokens=2)
    with pytest.raises(ValueError, match="call without session="):
        chat.bind_tools([add]).invoke("Hello", session=chat.start_session())
