"""Tool calling in OneGen's chat format: tool schemas, calls and results as dialogue text.

SmolLM2's chat template has no tool section, so the project defines one that works on any
template, in the ChatML tool convention (docs/tools.md):

- the tools are described in the system prompt: the model's system prompt, `TOOLS_INTRO`,
  then one JSON schema a line between `<tools>` and `</tools>`;
- the assistant calls a tool by writing `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  one block a call, and ends its turn;
- the results come back as the next user turn, one `<tool_response name="...">...</tool_response>`
  block a result; the assistant then answers from them (or calls again).

Knowledge lookups are not tools: the model retrieves with `[RQ]` inside the pass, so tools are
left for actions and live data. Everything here is text, so what training writes
(`training/configs/tool_data.py`) and what the adapters render are byte for byte the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onegen_integrations.dialogue import Dialogue
from onegen_integrations.errors import OneGenError

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOLS_INTRO = (
    "You can call these tools. To call one, reply with only "
    '<tool_call>{"name": <tool name>, "arguments": <arguments as a JSON object>}</tool_call>; '
    "its result comes back as <tool_response>. Call a tool only for what it does; "
    "answer from retrieved passages when you need knowledge."
)
"""The sentence between the system prompt and the tool list (it is part of what the model learned)."""
_CALL = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.DOTALL)


class ToolFormatError(OneGenError, ValueError):
    """A tool schema or tool choice the format cannot express."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, and its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    """A JSON schema of an object: `properties`, and `required` where some are."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name or ""):
            raise ToolFormatError(
                f"tool name {self.name!r} is not 1 to 64 letters, digits, '_', '.' or '-': rename the tool"
            )

    @classmethod
    def from_openai(cls, schema: Mapping[str, Any]) -> ToolSpec:
        """From OpenAI's tool shape, `{"type": "function", "function": {...}}`, or its inner object
        (what LangChain's `convert_to_openai_tool` and LlamaIndex's `to_openai_tool` return)."""
        function = schema.get("function", schema) if schema.get("type", "function") == "function" else None
        if not isinstance(function, Mapping) or "name" not in function:
            raise ToolFormatError(f"not a function tool schema (no function name): {dict(schema)!r}")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        return cls(function["name"], function.get("description") or "", parameters)

    def to_json(self) -> dict[str, Any]:
        """The schema line the system prompt holds."""
        return {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}


@dataclass(frozen=True)
class ToolCall:
    """A call the model wrote: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    """A fresh id per call, for the framework to match the result to the call."""

    def text(self) -> str:
        """The call as the assistant writes it (the form the model learned)."""
        body = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        return f"{CALL_OPEN}{body}{CALL_CLOSE}"


@dataclass(frozen=True)
class InvalidToolCall:
    """A `<tool_call>` block that is not a call: bad JSON, no name, or cut off."""

    text: str
    """What the block held."""
    error: str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    closed: bool = True
    """False when the answer ended inside the block."""

    def written(self) -> str:
        """The block as the model wrote it."""
        return CALL_OPEN + self.text + (CALL_CLOSE if self.closed else "")


Parsed = str | ToolCall | InvalidToolCall
"""A piece of an answer: text to show, or a call."""


def tools_prompt(system_prompt: str | None, tools: Sequence[ToolSpec]) -> str | None:
    """The system prompt that offers `tools` (the prompt itself when there are none)."""
    if not tools:
        return system_prompt
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise ToolFormatError(f"two tools share a name ({', '.join(names)}): give each tool its own name")
    lines = "\n".join(json.dumps(tool.to_json(), ensure_ascii=False) for tool in tools)
    head = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{head}{TOOLS_INTRO}\n<tools>\n{lines}\n</tools>"


def calls_text(content: str, calls: Iterable[ToolCall]) -> str:
    """An assistant message with calls as the model writes it: its text, then each call."""
    return content + "".join(call.text() for call in calls)


def result_text(content: str, name: str | None = None) -> str:
    """One tool result as the user turn that carries it holds it."""
    label = f' name="{name}"' if name else ""
    return f"<tool_response{label}>\n{content}\n</tool_response>"


def results_text(results: Iterable[tuple[str, str | None]]) -> str:
    """Several `(content, name)` results as one user turn (the adapters join consecutive tool
    messages with the same blank line)."""
    return "\n\n".join(result_text(content, name) for content, name in results)


def forced_prefix(choice: str, tools: Sequence[ToolSpec]) -> str:
    """The text an answer is made to start with for a `tool_choice`.

    `auto` and `none`: nothing (with `none` the tools are not offered at all); `required`:
    an opened call (of the only tool, when one is offered); a tool's name: an opened call of
    that tool, up to its arguments.
    """
    if choice in ("auto", "none"):
        return ""
    if choice == "required" and len(tools) != 1:
        return CALL_OPEN
    name = tools[0].name if choice == "required" else choice
    if name not in {tool.name for tool in tools}:
        offered = ", ".join(tool.name for tool in tools) or "none"
        raise ToolFormatError(
            f"tool_choice {choice!r} names no offered tool (offered: {offered}): "
            "give one of them, 'auto', 'required' or 'none'"
        )
    # Up to the colon: tokenizers write the space and the brace as one token (" {"), so a prefix
    # ending in the space would make the model write two spaces, and the call's text would not
    # be the one the history renders.
    return CALL_OPEN + json.dumps({"name": name, "arguments": {}})[: -len(" {}}")]


ToolChoice = str | bool | Mapping[str, Any] | None
"""`tool_choice` as the frameworks spell it: None or `auto`; `any`, `required` or True; `none`;
a tool's name; or OpenAI's `{"type": "function", "function": {"name": ...}}`."""


def choice_name(tool_choice: ToolChoice) -> str:
    """`tool_choice` as `auto`, `required`, `none` or a tool's name."""
    if tool_choice is None or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in ("any", "required"):
        return "required"
    if isinstance(tool_choice, str):
        return tool_choice
    if isinstance(tool_choice, Mapping) and isinstance(tool_choice.get("function"), Mapping):
        name = tool_choice["function"].get("name")
        if isinstance(name, str):
            return name
    raise ToolFormatError(
        f"tool_choice {tool_choice!r} is not understood: give 'auto', 'any', 'required', 'none', a "
        "tool's name, or {'type': 'function', 'function': {'name': ...}}"
    )


@dataclass(frozen=True)
class ToolOffer:
    """The tools one turn offers the model, and how it may call them: what every adapter and
    the server build from their framework's tools and `tool_choice`.

    Example:
        offer = ToolOffer.of([ToolSpec.from_openai(schema)], "required")
        dialogue = offer.dialogue(dialogue, model.config.system_prompt)
        done = dialogue.open(model).ask(dialogue.message, prefix=offer.prefix)
        text, calls, invalid = offer.answer(done.text)
    """

    tools: tuple[ToolSpec, ...]
    choice: str = "auto"
    """`auto`, `required`, or the name of the tool to call."""
    parallel: bool = True
    """Whether an answer may make several calls; if not, only its first call counts."""

    def __post_init__(self) -> None:
        forced_prefix(self.choice, self.tools)  # a choice naming no tool is refused before generating

    @classmethod
    def of(cls, tools: Sequence[ToolSpec], tool_choice: ToolChoice = None, parallel: bool = True) -> ToolOffer | None:
        """The offer of `tools`; None when there are none or `tool_choice` is `none` (then the
        model is not told of any). Raises `ToolFormatError` for a choice naming no tool."""
        choice = choice_name(tool_choice)
        if not tools or choice == "none":
            return None
        return cls(tuple(tools), choice, parallel)

    @property
    def prefix(self) -> str:
        """What the answer is made to start with (the `prefix` generation option)."""
        return forced_prefix(self.choice, self.tools)

    def dialogue(self, dialogue: Dialogue, system_prompt: str | None) -> Dialogue:
        """`dialogue` with the tools listed after its system prompt, or after `system_prompt`
        (the one its session would use) when it has none; two tools of one name are refused."""
        own = system_prompt if dialogue.system_prompt is None else dialogue.system_prompt
        return dataclasses.replace(dialogue, system_prompt=tools_prompt(own, self.tools))

    def keeps(self, calls: Sequence[ToolCall]) -> bool:
        """Whether a call that comes after `calls` counts."""
        return self.parallel or not calls

    def answer(self, text: str) -> tuple[str, list[ToolCall], list[InvalidToolCall]]:
        """An answer's text without its call blocks, the calls that count, and the invalid ones."""
        content, parsed = parse_answer(text)
        calls = [call for call in parsed if isinstance(call, ToolCall)]
        invalid = [call for call in parsed if isinstance(call, InvalidToolCall)]
        return content, calls if self.parallel else calls[:1], invalid


def parse_call(body: str) -> ToolCall | InvalidToolCall:
    """The call inside one `<tool_call>` block."""
    try:
        value = json.loads(body)
    except ValueError as error:
        return InvalidToolCall(body, f"the call is not valid JSON: {error}")
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return InvalidToolCall(body, 'the call is not a JSON object with a "name"')
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    if not isinstance(arguments, dict):
        return InvalidToolCall(body, 'the call\'s "arguments" is not a JSON object')
    return ToolCall(value["name"], arguments)


def parse_answer(text: str) -> tuple[str, list[ToolCall | InvalidToolCall]]:
    """An answer's text without its call blocks, and the calls (an unclosed block is invalid)."""
    stream = CallStream()
    pieces = [*stream.feed(text), *stream.finish()]
    return "".join(p for p in pieces if isinstance(p, str)), [p for p in pieces if not isinstance(p, str)]


class CallStream:
    """Splits streamed answer text into text to show and complete calls.

    Text that could be the start of `<tool_call>` is held until it is known not to be, and a
    call comes out whole once its block closes, so no call text ever reaches the answer stream.
    Whitespace between calls, and after the last one, is dropped.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._in_call = False
        self._called = False

    def feed(self, delta: str) -> list[Parsed]:
        """The pieces `delta` completes, in order."""
        self._buffer += delta
        out: list[Parsed] = []
        while True:
            if self._in_call:
                body, found, rest = self._buffer.partition(CALL_CLOSE)
                if not found:
                    return out
                out.append(parse_call(body))
                self._buffer, self._in_call, self._called = rest, False, True
                continue
            text, found, rest = self._buffer.partition(CALL_OPEN)
            if found:
                if text.strip():
                    out.append(text.rstrip())
                self._buffer, self._in_call = rest, True
                continue
            shown = _safe_text(text)
            if shown:
                out.append(shown)
            self._buffer = text[len(shown) :]
            return out

    def finish(self) -> list[Parsed]:
        """What is left once the answer has ended: an unclosed call is invalid."""
        rest, self._buffer = self._buffer, ""
        if self._in_call:
            self._in_call = False
            return [
                InvalidToolCall(rest, "the call was cut off before </tool_call> (raise max_new_tokens)", closed=False)
            ]
        if self._called and not rest.strip():
            return []
        return [rest] if rest else []


def _safe_text(text: str) -> str:
    """`text` minus trailing whitespace and any tail that may open a call."""
    for length in range(min(len(text), len(CALL_OPEN) - 1), 0, -1):
        if CALL_OPEN.startswith(text[-length:]):
            text = text[:-length]
            break
    return text.rstrip()
