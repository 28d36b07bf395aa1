"""LangChain messages and OneGen turns: message lists as an engine `Dialogue`, answers as chunks.

A LangChain chat model is handed the whole conversation on every call; the core `Dialogue`
splits it into a system prompt, earlier turns and the new message. An AI message that
carries its retrievals (`onegen_retrievals` in `additional_kwargs`, as every OneGen answer
does, or in `response_metadata`) is replayed with its `[RQ]` and passages where the live
answer had them. Tool calls and results are text in OneGen's format (`onegen_integrations.tools`):
an AI message's calls follow its text, and a tool message is a user turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk

from onegen_integrations.dialogue import Dialogue, Role, Turn
from onegen_integrations.errors import UnsupportedFrameworkError
from onegen_integrations.replay import RETRIEVALS_KEY
from onegen_integrations.tools import CallStream, Parsed, ToolCall, calls_text, result_text

_ROLES: dict[type[BaseMessage], Role] = {
    SystemMessage: "system",
    HumanMessage: "user",
    AIMessage: "assistant",
    ToolMessage: "user",
}
_CALL_BLOCKS = {"tool_call", "tool_use"}
"""Content blocks that repeat an AI message's `tool_calls` (OpenAI's v1 and Anthropic's shapes)."""


def to_dialogue(messages: Sequence[BaseMessage]) -> Dialogue:
    """Split LangChain messages into a `Dialogue` (rules: `Dialogue.from_turns`).

    System, human and AI messages map to the system, user and assistant roles; an AI
    message's `onegen_retrievals` (from `additional_kwargs`, else `response_metadata`) goes
    with its turn and its `tool_calls` follow its text as call blocks. A tool message is a
    user turn holding a `<tool_response>` named for its tool (its `name`, else the name of
    the call it answers); consecutive ones join into one turn. Raises `ValueError` when the
    last message is neither a human nor a tool message, `UnsupportedFrameworkError` (a
    `NotImplementedError`) for other message types and non-text content.
    """
    return Dialogue.from_turns(_turns(messages), user_message="a human or tool message", append="HumanMessage(...)")


def _turns(messages: Sequence[BaseMessage]) -> Iterator[Turn]:
    called: dict[str, str] = {}  # tool names by call id, for tool messages that do not name their tool
    for message in messages:
        role = _role(message)
        if isinstance(message, AIMessage) and message.tool_calls:
            calls = [ToolCall(c["name"], c["args"], c["id"] or "") for c in message.tool_calls]
            called.update((call.id, call.name) for call in calls)
            yield Turn(role, calls_text(message.text, calls), retrievals_of(message))
        elif isinstance(message, ToolMessage):
            yield Turn(role, result_text(message.text, message.name or called.get(message.tool_call_id)))
        else:
            yield Turn(role, message.text, retrievals_of(message))


def retrievals_of(message: BaseMessage) -> Any:
    """The `onegen_retrievals` an AI message carries, or None when its retrievals are unknown."""
    for metadata in (message.additional_kwargs, message.response_metadata):
        if RETRIEVALS_KEY in metadata:
            return metadata[RETRIEVALS_KEY]
    return None


class AnswerChunks:
    """Streamed answer text as message chunks: the text, and with `calls` each call the model
    writes as one chunk with one `tool_call_chunks` entry (its text never shows).

    A call's arguments travel as a JSON string (LangChain parses them back when chunks are
    added up); an invalid call keeps the block as the model wrote it, tags included, so it never
    parses and ends up among `invalid_tool_calls`. A call's `index` is its content block's:
    a run of text is one block, each call another (as `output_version="v1"` numbers them).
    """

    def __init__(self, *, calls: bool) -> None:
        self._calls = CallStream() if calls else None
        self._block = -1
        self._in_text = False

    def feed(self, delta: str) -> list[AIMessageChunk]:
        """The chunks `delta` completes."""
        return self._chunks(self._calls.feed(delta) if self._calls else [delta])

    def finish(self) -> list[AIMessageChunk]:
        """The chunks left once the answer has ended (a call cut off is invalid)."""
        return self._chunks(self._calls.finish() if self._calls else [])

    def _chunks(self, pieces: list[Parsed]) -> list[AIMessageChunk]:
        chunks = []
        for piece in pieces:
            if not (self._in_text and isinstance(piece, str)):
                self._block += 1
            self._in_text = isinstance(piece, str)
            if isinstance(piece, str):
                chunks.append(AIMessageChunk(content=piece))
                continue
            if isinstance(piece, ToolCall):
                call = tool_call_chunk(
                    name=piece.name, args=json.dumps(piece.arguments), id=piece.id, index=self._block
                )
            else:
                call = tool_call_chunk(name=None, args=piece.written(), id=piece.id, index=self._block)
            chunks.append(AIMessageChunk(content="", tool_call_chunks=[call]))
        return chunks


def _role(message: BaseMessage) -> Role:
    role = next((name for kind, name in _ROLES.items() if isinstance(message, kind)), None)
    if role is None:
        raise UnsupportedFrameworkError(
            f"{type(message).__name__} is not supported: OneGen chat models take system, human, AI "
            "and tool messages (convert others, e.g. with langchain_core.messages.convert_to_messages)"
        )
    ignored = _CALL_BLOCKS if isinstance(message, AIMessage) else set()
    if isinstance(message.content, list) and any(
        isinstance(block, dict) and block.get("type") not in {"text", *ignored} for block in message.content
    ):
        raise UnsupportedFrameworkError("only text content is supported: remove image, audio and file blocks")
    return role
