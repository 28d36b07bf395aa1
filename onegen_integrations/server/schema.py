"""The OpenAI wire format: request models the server validates, and the bodies it sends back."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from onegen_integrations.conversations import Lease
from onegen_integrations.dialogue import Dialogue, Turn
from onegen_integrations.events import DoneEvent, FinishReason, RetrievalEvent
from onegen_integrations.replay import RETRIEVALS_KEY
from onegen_integrations.server.errors import ApiError
from onegen_integrations.tools import ToolCall, ToolFormatError, ToolOffer, ToolSpec, calls_text, result_text

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "user",
    "function": "user",
}
"""OpenAI roles as the engine's: instructions are the system prompt; tool results are user turns."""
FINISH_REASONS: dict[FinishReason, str] = {"eos": "stop", "stop": "stop", "length": "length", "context": "length"}
MAPPED_OPTIONS = ("max_new_tokens", "stop", "temperature", "top_p")
"""Generation options set by OpenAI's own fields (`max_tokens`, `stop`, ...), not by `onegen`."""


class ContentPart(BaseModel):
    """One part of a message's content; only text parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str
    """The arguments as a JSON text, as OpenAI sends them."""


class MessageToolCall(BaseModel):
    """A call an earlier answer made, as the client sends it back."""

    model_config = ConfigDict(extra="allow")
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """A chat message; an assistant message may carry `onegen_retrievals` from an earlier response
    and the `tool_calls` it made; a `tool` message answers one of them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    retrievals: list[Any] | None = Field(default=None, alias=RETRIEVALS_KEY)
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def turn(self, index: int, names: dict[str, str]) -> Turn:
        """The message as an engine turn: calls and tool results in the tool format's text.
        `names` maps the call ids seen so far to their tools (a result names its tool)."""
        text = self.text(index)
        if self.role in ("tool", "function"):
            return Turn("user", result_text(text, self.name or names.get(self.tool_call_id or "")))
        if self.role == "assistant" and self.tool_calls:
            calls = [ToolCall(c.function.name, _arguments(c, index), c.id) for c in self.tool_calls]
            names.update((call.id, call.name) for call in calls)
            return Turn("assistant", calls_text(text, calls), self.retrievals)
        return Turn(ROLES[self.role], text, self.retrievals if self.role == "assistant" else None)

    def text(self, index: int) -> str:
        """The content as one string; refuses parts that are not text."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        others = sorted({part.type for part in self.content if part.type != "text"})
        if others:
            raise ApiError(
                400,
                f"messages[{index}] holds {', '.join(others)} content: only text is read",
                param=f"messages.{index}.content",
            )
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`. Fields of OpenAI's API the engine has no use for (penalties,
    `logit_bias`, `user`, ...) are accepted and ignored; `n` above 1 and
    `logprobs` are refused."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)
    """Seeds sampling for this answer (the range torch's generator takes)."""
    stream_options: StreamOptions | None = None
    metadata: dict[str, Any] | None = None
    onegen: dict[str, Any] = Field(default_factory=dict)
    """OneGen generation options beyond OpenAI's (`k`, `retrieval`, `max_retrievals`, ...)."""
    n: int = 1
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None

    def refuse_unsupported(self) -> None:
        """`ApiError` for the OpenAI features this server does not offer."""
        if self.n != 1:
            raise ApiError(400, "n must be 1: the server writes one answer per request", param="n")
        if self.logprobs:
            raise ApiError(400, "logprobs are not supported by this server", param="logprobs")
        mapped = sorted(set(self.onegen) & set(MAPPED_OPTIONS))
        if mapped:
            raise ApiError(
                400,
                f"set {', '.join(mapped)} with OpenAI's own fields (max_tokens, stop, temperature, top_p), not in onegen",
                param="onegen",
            )

    def offer(self) -> ToolOffer | None:
        """The tools the model is told of, and how it may call them (None: no tools, or
        `tool_choice: "none"`)."""
        try:
            tools = [ToolSpec.from_openai(tool) for tool in self.tools or []]
        except ToolFormatError as error:
            raise ApiError(400, str(error), param="tools") from error
        try:
            return ToolOffer.of(tools, self.tool_choice, self.parallel_tool_calls is not False)
        except ToolFormatError as error:
            raise ApiError(400, str(error), param="tool_choice") from error

    def generation_options(self, offer: ToolOffer | None) -> dict[str, Any]:
        """`GenerationOptions` overrides this request asks for (unchecked); a `tool_choice`
        that asks for a call starts the answer with it."""
        given = {
            "max_new_tokens": self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens,
            "stop": self.stop,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "prefix": offer.prefix if offer else None,
        }
        return {**self.onegen, **{name: value for name, value in given.items() if value}}

    def dialogue(self, offer: ToolOffer | None, system_prompt: str | None) -> Dialogue:
        """The messages as a `Dialogue`: system prompt (with the offered tools listed after it,
        or after `system_prompt`, the model's, when the messages set none), history, and the
        message to answer."""
        if not self.messages:
            raise ApiError(400, "messages is empty: send at least one user message", param="messages")
        names: dict[str, str] = {}
        turns = [message.turn(i, names) for i, message in enumerate(self.messages)]
        try:
            dialogue = Dialogue.from_turns(turns, append='{"role": "user", "content": ...}')
            return offer.dialogue(dialogue, system_prompt) if offer else dialogue
        except ToolFormatError as error:
            raise ApiError(400, str(error), param="tools") from error
        except ValueError as error:
            raise ApiError(400, str(error), param="messages") from error

    def conversation_id(self, header: str | None) -> str | None:
        """The conversation id from the `X-Conversation-ID` header, else `metadata.conversation_id`."""
        given = header or (self.metadata or {}).get("conversation_id")
        if given is not None and not (isinstance(given, str) and 0 < len(given) <= 128):
            raise ApiError(
                400, "a conversation id is a string of 1 to 128 characters", param="metadata.conversation_id"
            )
        return given


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings`; `input_type` picks the token the vector is read at."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]
    input_type: Literal["document", "query"] = "document"
    """`document`: `{text}[RD]`, for indexing; `query`: `{text}[RQ]`, for searching."""
    encoding_format: Literal["float", "base64"] = "float"


class Completion:
    """The id, creation time, model and conversation shared by one response's body or chunks."""

    def __init__(self, model: str, conversation_id: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.conversation_id = conversation_id

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "conversation_id": self.conversation_id,
        }

    def body(self, done: DoneEvent, lease: Lease, offer: ToolOffer | None) -> dict[str, Any]:
        """The whole `chat.completion`; with tools offered, calls in the answer are `tool_calls`
        (a block that does not parse stays in the text as it was written)."""
        text, calls, invalid = offer.answer(done.text) if offer else (done.text, [], [])
        text += "".join(call.written() for call in invalid)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text or (None if calls else ""),
            RETRIEVALS_KEY: [retrieval_json(r) for r in done.retrievals],
        }
        if calls:
            message["tool_calls"] = [tool_call_json(call) for call in calls]
        finish = "tool_calls" if calls else FINISH_REASONS[done.finish_reason]
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return {**self._head("chat.completion"), "choices": [choice], "usage": usage_json(done, lease)}

    def chunk(self, delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        """One `chat.completion.chunk`: a delta of choice 0, and `extra` top-level fields."""
        choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        return {**self._head("chat.completion.chunk"), "choices": [choice], **extra}

    def usage_chunk(self, done: DoneEvent, lease: Lease) -> dict[str, Any]:
        """The chunk OpenAI sends last with `stream_options.include_usage`: usage, no choices."""
        return {**self._head("chat.completion.chunk"), "choices": [], "usage": usage_json(done, lease)}


def tool_call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    """A call as OpenAI writes it (arguments as JSON text); `index` places it in a stream."""
    function = {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}
    return {**({"index": index} if index is not None else {}), "id": call.id, "type": "function", "function": function}


def _arguments(call: MessageToolCall, index: int) -> dict[str, Any]:
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except ValueError as error:
        raise ApiError(
            400, f"a tool call's arguments are not JSON: {error}", param=f"messages.{index}.tool_calls"
        ) from error
    if not isinstance(arguments, dict):
        raise ApiError(400, "a tool call's arguments must be a JSON object", param=f"messages.{index}.tool_calls")
    return arguments


def retrieval_json(event: RetrievalEvent) -> dict[str, Any]:
    """A retrieval as the response carries it: where `[RQ]` stood, and each hit in full.

    The same shape `replay.retrievals_from_json` reads, so an assistant message sent back with
    it replays its retrievals exactly."""
    hits = [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in event.hits]
    return {"offset": event.offset, "hits": hits}


def usage_json(done: DoneEvent, lease: Lease) -> dict[str, Any]:
    """OpenAI's usage (every token the answer attended counts as prompt, the cached ones
    included), and under `onegen` what this request actually fed through the model: a rebuilt
    history included, so a continued conversation's few tokens show against a rebuild's many."""
    usage = done.usage
    prompt = usage.cached_tokens + usage.prompt_tokens + usage.inserted_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": prompt + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "onegen": {
            "fed_tokens": usage.processed_tokens + lease.fed_tokens,
            "new_prompt_tokens": usage.prompt_tokens,
            "inserted_tokens": usage.inserted_tokens,
            "rebuilt_tokens": usage.rebuilt_tokens,
            "retrievals": usage.retrievals,
            "conversation": lease.reuse,
            "seconds": round(usage.seconds, 4),
        },
    }
