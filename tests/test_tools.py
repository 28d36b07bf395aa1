"""The tool-calling text format: schemas in the system prompt, calls parsed whole and never
streamed as text, results as user turns, and `tool_choice` as a forced answer prefix."""

from __future__ import annotations

import json

import pytest

from onegen_integrations.chat_format import ChatFormat
from onegen_integrations.dialogue import Dialogue
from onegen_integrations.errors import InvalidOptionError
from onegen_integrations.tools import (
    CallStream,
    InvalidToolCall,
    ToolCall,
    ToolFormatError,
    ToolOffer,
    ToolSpec,
    calls_text,
    choice_name,
    forced_prefix,
    parse_answer,
    result_text,
    results_text,
    tools_prompt,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _spec() -> ToolSpec:
    return ToolSpec.from_openai(WEATHER)


def test_openai_schemas_and_their_inner_function_give_the_same_spec():
    assert ToolSpec.from_openai(WEATHER) == ToolSpec.from_openai(WEATHER["function"])
    assert _spec().to_json()["parameters"]["required"] == ["city"]
    bare = ToolSpec.from_openai({"name": "now"})
    assert bare.parameters == {"type": "object", "properties": {}} and bare.description == ""


@pytest.mark.parametrize(
    "schema", [{"type": "retrieval"}, {"function": {"description": "no name"}}, {"name": "has space"}]
)
def test_schemas_the_format_cannot_express_are_refused(schema):
    with pytest.raises(ToolFormatError):
        ToolSpec.from_openai(schema)


def test_the_system_prompt_lists_each_tool_as_one_json_line():
    prompt = tools_prompt("Be brief.", [_spec(), ToolSpec("now")])
    assert prompt.startswith("Be brief.\n\n")
    listed = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0].splitlines()
    assert [json.loads(line)["name"] for line in listed] == ["get_weather", "now"]
    assert tools_prompt("Be brief.", []) == "Be brief."
    with pytest.raises(ToolFormatError, match="share a name"):
        tools_prompt(None, [_spec(), _spec()])


def test_calls_round_trip_through_their_text():
    call = ToolCall("get_weather", {"city": "Zürich"})
    text, calls = parse_answer(calls_text("", [call, ToolCall("now", {})]))
    assert text == ""
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Zürich"}), ("now", {})]
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")


def test_text_around_calls_is_kept_and_whitespace_between_them_dropped():
    text, calls = parse_answer('Let me check. <tool_call>{"name": "now", "arguments": {}}</tool_call>\n')
    assert text == "Let me check." and [c.name for c in calls] == ["now"]
    assert parse_answer("No tools needed.") == ("No tools needed.", [])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json}", "not valid JSON"),
        ('{"arguments": {}}', 'with a "name"'),
        ('{"name": "now", "arguments": [1]}', "not a JSON object"),
    ],
)
def test_blocks_that_are_not_calls_are_invalid_calls(body, error):
    _, calls = parse_answer(f"<tool_call>{body}</tool_call>")
    assert isinstance(calls[0], InvalidToolCall) and error in calls[0].error and calls[0].text == body


def test_arguments_written_as_a_json_string_are_decoded():
    _, calls = parse_answer('<tool_call>{"name": "now", "arguments": "{\\"tz\\": \\"UTC\\"}"}</tool_call>')
    assert calls[0].arguments == {"tz": "UTC"}


def test_an_unclosed_call_is_invalid_and_says_to_raise_the_limit():
    _, calls = parse_answer('<tool_call>{"name": "no')
    assert isinstance(calls[0], InvalidToolCall) and "max_new_tokens" in calls[0].error


def test_streamed_pieces_never_show_call_text_whatever_the_cut():
    answer = 'Checking <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n'
    for size in (1, 2, 3, 5, 7, 11):
        stream = CallStream()
        pieces = [p for i in range(0, len(answer), size) for p in stream.feed(answer[i : i + size])]
        pieces += stream.finish()
        shown = "".join(p for p in pieces if isinstance(p, str))
        assert shown == "Checking", size
        assert [(p.name, p.arguments) for p in pieces if isinstance(p, ToolCall)] == [("get_weather", {"city": "Oslo"})]


def test_text_that_only_looks_like_a_call_opening_comes_out_at_the_end():
    stream = CallStream()
    assert stream.feed("a < b and <tool") == ["a < b and"]
    assert stream.finish() == [" <tool"]


def test_results_are_user_turn_text_joined_by_a_blank_line():
    assert result_text("21 °C", "get_weather") == '<tool_response name="get_weather">\n21 °C\n</tool_response>'
    assert results_text([("1", "a"), ("2", None)]) == (
        '<tool_response name="a">\n1\n</tool_response>\n\n<tool_response>\n2\n</tool_response>'
    )


def test_tool_choice_becomes_the_start_of_the_answer():
    tools = [_spec()]
    assert forced_prefix("auto", tools) == forced_prefix("none", tools) == ""
    assert forced_prefix("required", [*tools, ToolSpec("now")]) == "<tool_call>"
    assert forced_prefix("required", tools) == forced_prefix("get_weather", tools)  # the only tool
    named = forced_prefix("get_weather", tools)
    assert named == '<tool_call>{"name": "get_weather", "arguments":'
    _, calls = parse_answer(named + '{"city": "Oslo"}}</tool_call>')
    assert calls[0].arguments == {"city": "Oslo"}
    with pytest.raises(ToolFormatError, match="offered: get_weather"):
        forced_prefix("get_time", tools)


def test_a_forced_prefix_is_tokenized_as_the_start_of_the_call_it_opens(tiny_model) -> None:
    # A model that goes on from the prefix as it learned writes the call's own text, so the
    # history a framework sends back renders the same tokens and the cached conversation continues.
    call = ToolCall("get_weather", {"city": "Oslo"})
    prefix = tiny_model.tokenize(forced_prefix("get_weather", [_spec()]))
    assert tiny_model.tokenize(call.text())[: len(prefix)] == prefix


@pytest.mark.parametrize(
    ("choice", "expected"),
    [(None, "auto"), ("any", "required"), (True, "required"), ("none", "none"), ("f", "f"),
     ({"type": "function", "function": {"name": "f"}}, "f")],
)
def test_tool_choice_spellings_of_the_frameworks_are_understood(choice, expected):
    assert choice_name(choice) == expected


def test_an_offer_lists_its_tools_in_the_system_prompt_and_keeps_calls_as_asked(tiny_model):
    dialogue = Dialogue("Weather in Oslo?")
    offer = ToolOffer.of([_spec()], "required", parallel=False)
    assert offer.dialogue(dialogue, "Be brief.").system_prompt == tools_prompt("Be brief.", [_spec()])
    assert ToolOffer.of([_spec()], "none") is None and ToolOffer.of([], "auto") is None
    two = calls_text("", [ToolCall("get_weather", {"city": "Oslo"}), ToolCall("get_weather", {"city": "Rome"})])
    assert [c.arguments["city"] for c in offer.answer(two)[1]] == ["Oslo"]
    assert len(ToolOffer.of([_spec()]).answer(two)[1]) == 2
    with pytest.raises(ToolFormatError, match="not understood"):
        ToolOffer.of([_spec()], {"type": "function"})


def test_the_tools_prompt_renders_through_the_chat_template_as_plain_text(tiny_model):
    prompt = tools_prompt(tiny_model.config.system_prompt, [_spec()])
    pieces = ChatFormat(tiny_model.tokenizer, prompt, tiny_model.text).preamble()
    assert tiny_model.tokenizer.decode(pieces).count("<tools>") == 1


def test_a_prefix_starts_the_answer_and_the_model_goes_on_from_it(tiny_model):
    session = tiny_model.session(retrieval="never", max_new_tokens=20)
    prefix = forced_prefix("get_weather", [_spec()])
    done = session.ask("Weather in Oslo?", prefix=prefix)
    assert done.text.startswith(prefix)
    assert done.usage.completion_tokens == 20
    assert session.ask("And now?").text != ""  # the option was for that turn only
    with pytest.raises(InvalidOptionError, match="prefix"):
        session.ask("x", prefix=3)
