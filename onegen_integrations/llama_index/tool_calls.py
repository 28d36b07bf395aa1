"""Tool calling in LlamaIndex terms: the tools a turn offers, and an answer's calls as `ToolCallBlock`s.

The format is `onegen_integrations.tools`': the tools are described in the system prompt, the
model writes `<tool_call>` blocks, and results come back as a user turn (`messages.to_dialogue`
renders calls and results in history). An answer's message holds its text without the call
blocks, then a `ToolCallBlock` per call (what llama-index-core 0.14's agents read); calls that do
not parse are listed under `additional_kwargs[INVALID_CALLS_KEY]`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ContentBlock, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools.types import BaseTool

from onegen_integrations.errors import NoToolCallError, UnsupportedFrameworkError
from onegen_integrations.tools import ToolCall, ToolFormatError, ToolOffer, ToolSpec

logger = logging.getLogger(__name__)

INVALID_CALLS_KEY = "onegen_invalid_tool_calls"
"""`additional_kwargs` key of an answer's calls that do not parse: each one's `id`, `text` and `error`."""
TOOL_KEYWORDS = ("tools", "tool_required", "tool_choice", "allow_parallel_tool_calls")
"""The keyword arguments with which LlamaIndex asks an LLM call for tool calls."""

Tool = BaseTool | ToolSpec | Mapping[str, Any]
"""A tool as a caller gives it: a LlamaIndex tool, a `ToolSpec`, or an OpenAI tool schema."""

_PROMPTED_AGENTS = {"ReActAgent": ("Action Input:", "Observation:"), "CodeActAgent": ("<execute>", "</execute>")}
"""Agents that describe tools in their own text format, and two strings their system prompt holds."""


def tool_spec(tool: Tool) -> ToolSpec:
    """The tool as the model sees it: name, description and arguments' JSON schema."""
    if isinstance(tool, ToolSpec):
        return tool
    if isinstance(tool, BaseTool):
        return ToolSpec.from_openai(tool.metadata.to_openai_tool(skip_length_check=True))
    return ToolSpec.from_openai(tool)


def take_offer(kwargs: dict[str, Any]) -> ToolOffer | None:
    """Take LlamaIndex's tool-calling keywords (`TOOL_KEYWORDS`) out of a call's `kwargs`.

    None when no tools are given or `tool_choice` is `"none"` (the tools are not offered).
    `tool_choice` is as `tools.choice_name` takes it; without one, `tool_required=True` means
    `required`.
    """
    tools, required, choice, parallel = (kwargs.pop(key, None) for key in TOOL_KEYWORDS)
    choice = choice or ("required" if required else None)
    return ToolOffer.of([tool_spec(tool) for tool in tools or ()], choice, parallel is not False)


def offered_message(
    offer: ToolOffer, text: str, additional_kwargs: dict[str, Any], streamed: Sequence[ToolCall] | None = None
) -> ChatMessage:
    """The answer `text` as an assistant message: its text without call blocks, then the calls
    that count (`streamed`, the same calls as a stream gave them out, keeps their ids)."""
    content, calls, invalid = offer.answer(text)
    for call in invalid:
        logger.warning("the model wrote a tool call that does not parse (%s): %r", call.error, call.text)
    if invalid:
        additional_kwargs[INVALID_CALLS_KEY] = [{"id": c.id, "text": c.text, "error": c.error} for c in invalid]
    return assistant_message(content, calls if streamed is None else streamed, additional_kwargs)


def assistant_message(
    content: str, calls: Sequence[ToolCall] = (), additional_kwargs: dict[str, Any] | None = None
) -> ChatMessage:
    """An answer as LlamaIndex carries it: a text block, then a `ToolCallBlock` per call.

    The calls are also in `additional_kwargs["tool_calls"]`, in OpenAI's JSON shape, as
    LlamaIndex's OpenAI LLM puts them: streamed structured output and memory summaries look there.
    """
    blocks: list[ContentBlock] = [TextBlock(text=content)]
    blocks += [ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=c.arguments) for c in calls]
    extra = dict(additional_kwargs or {})
    if calls:
        extra["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls
        ]
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


def message_calls(message: ChatMessage) -> list[ToolCall]:
    """The calls a message carries as `ToolCallBlock`s (arguments given as JSON text are parsed)."""
    return [
        ToolCall(block.tool_name, _arguments(block), block.tool_call_id or "")
        for block in message.blocks
        if isinstance(block, ToolCallBlock)
    ]


def tool_selections(message: ChatMessage, error_on_no_tool_call: bool) -> list[ToolSelection]:
    """The calls of an answer as the `ToolSelection`s agents run; with `error_on_no_tool_call`,
    an answer without one raises `NoToolCallError`, which names a call that did not parse."""
    selections = [
        ToolSelection(tool_id=c.id, tool_name=c.name, tool_kwargs=c.arguments) for c in message_calls(message)
    ]
    if selections or not error_on_no_tool_call:
        return selections
    invalid = message.additional_kwargs.get(INVALID_CALLS_KEY)
    if invalid:
        raise NoToolCallError(
            f"the model's tool call does not parse ({invalid[0]['error']}): {invalid[0]['text']!r}; "
            "a model trained for tool calls writes valid ones (the default is), or try again sampling"
        )
    raise NoToolCallError(
        "the model called no tool: pass tool_required=True (or tool_choice=<a tool's name>) to make it "
        "call one, or error_on_no_tool_call=False to accept an answer without a call"
    )


def refuse_prompted_agents(messages: Sequence[ChatMessage]) -> None:
    """Raise `UnsupportedFrameworkError` if the system prompt is `ReActAgent`'s or `CodeActAgent`'s.

    Those agents pass no tools to the LLM: they describe them in a system prompt and parse
    the answer's text in a format OneGen models never learned, so their runs would fail or
    answer nonsense. Their prompt is the only sign of them an LLM call gets.
    """
    system = "\n".join(m.content or "" for m in messages if m.role in (MessageRole.SYSTEM, MessageRole.DEVELOPER))
    for agent, markers in _PROMPTED_AGENTS.items():
        if all(marker in system for marker in markers):
            raise UnsupportedFrameworkError(
                f"OneGen models cannot follow {agent}'s prompt (tool calls in a text format they never "
                "learned): use FunctionAgent(llm=OneGenLLM(model), tools=[...]), or "
                "OneGenAgent.from_index(index, tools=[...]) to retrieve in the same pass"
            )


def _arguments(block: ToolCallBlock) -> dict[str, Any]:
    arguments = block.tool_kwargs
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            arguments = None
    if not isinstance(arguments, dict):
        raise ToolFormatError(
            f"the call of {block.tool_name!r} has arguments that are not a JSON object ({block.tool_kwargs!r}): "
            "give a dict, or its JSON text, as tool_kwargs"
        )
    return arguments
