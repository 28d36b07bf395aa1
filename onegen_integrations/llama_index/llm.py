"""`OneGenLLM`: the OneGen model as a LlamaIndex LLM: generation and tool calls, no retrieval."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, model_validator
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from onegen_integrations.conversations import Conversations, Lease
from onegen_integrations.dialogue import Dialogue
from onegen_integrations.events import Event
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.llama_index.streams import (
    answer_message,
    chat_responses,
    completion_responses,
    iterate_in_thread,
    run_to_end,
    turn_metadata,
)
from onegen_integrations.llama_index.tool_calls import (
    Tool,
    refuse_prompted_agents,
    take_offer,
    tool_selections,
    tool_spec,
)
from onegen_integrations.model import OneGenModel
from onegen_integrations.options import DEFAULTS, GenerationOptions
from onegen_integrations.session import LogitsProcessor, OneGenSession
from onegen_integrations.tools import ToolOffer

_CALL_OPTIONS = ("max_new_tokens", "temperature", "top_p", "top_k", "stop")


class OneGenLLM(FunctionCallingLLM):
    """A `OneGenModel` as a LlamaIndex LLM: chat-template generation, tool calls, streaming, async.

    Wrap an already-loaded model, so `OneGenEmbedding(model)` and this LLM share one copy
    of the weights. Retrieval is off (`[RQ]` is never emitted); message lists are fed in the
    model's chat template, history first, and an answer in them that carries
    `additional_kwargs[RETRIEVALS_KEY]` (as the chat engine's and agent's answers do) is fed
    with its `[RQ]` and passages where they were. For retrieval inside generation use
    `OneGenQueryEngine`, `OneGenChatEngine` or `OneGenAgent`. A response's `raw` is plain
    JSON: finish reason, token usage (what `TokenCountingHandler` reads) and retrievals; a
    chat answer's message carries its (empty) retrievals too. Streams end with an
    empty-delta response that carries them.

    It is a `FunctionCallingLLM`: `FunctionAgent`, `predict_and_call` and `structured_predict`
    work, in the model's tool format (`onegen_integrations.tools`). A call's tools are described
    in the system prompt; the answer's calls come back as `ToolCallBlock`s after its text and
    never in a stream's deltas; `tool_required=True` makes the answer open a call. Tool results
    in the history (`role="tool"`) are fed as a user turn. `ReActAgent` and `CodeActAgent`
    prompts are refused with `UnsupportedFrameworkError`: the model never learned their formats.

    The sessions of the last `cached_conversations` conversations are kept: a call whose
    history is exactly what one holds (an agent's next step, a chat's next message) feeds only
    the new tokens. The cache is only a cache: any other history gets a new session, and the
    answer is the same either way.

    Key arguments: `max_new_tokens`, `temperature` (0: greedy), `top_p`, `top_k`, `stop`,
    `seed`, `system_prompt` (default: the model's); defaults and allowed values are the
    engine's `GenerationOptions`'. Per call, `max_new_tokens`, `temperature`, `top_p`,
    `top_k` and `stop` may be passed as keyword arguments, checked the same way.
    `logits_processor` edits next-token logits (bans, biases, tests).

    Example:
        model = OneGenModel.load("default")
        Settings.llm = OneGenLLM(model, max_new_tokens=64)
        Settings.embed_model = OneGenEmbedding(model)
        print(Settings.llm.complete("Name a colour.").text)
        agent = FunctionAgent(llm=Settings.llm, tools=[FunctionTool.from_defaults(fn=add)])
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    # Defaults and allowed values are the engine's `GenerationOptions`' (checked below).
    max_new_tokens: int = Field(default=DEFAULTS.max_new_tokens)
    """Most tokens generated per call."""
    temperature: float = Field(default=DEFAULTS.temperature)
    """0 decodes greedily; above 0 samples."""
    top_p: float = Field(default=DEFAULTS.top_p)
    """Nucleus sampling mass when sampling."""
    top_k: int = Field(default=DEFAULTS.top_k)
    """Sample only from the k most likely tokens (0: all)."""
    stop: list[str] = Field(default_factory=lambda: list(DEFAULTS.stop))
    """Strings that end the answer; the text is cut before the first one."""
    seed: int | None = None
    """Seeds sampling, so a sampled answer can be repeated."""
    cached_conversations: int = Field(default=4, ge=0)
    """Conversations whose KV caches are kept between calls (0: none)."""

    _model: OneGenModel = PrivateAttr()
    _logits_processor: LogitsProcessor | None = PrivateAttr(default=None)
    _conversations: Conversations = PrivateAttr()
    """Sessions of the last `cached_conversations` conversations, for calls that continue one."""

    def __init__(self, model: OneGenModel, *, logits_processor: LogitsProcessor | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self._model = model
        self._logits_processor = logits_processor
        # Each cache is bounded by the context window; the count bounds them together.
        self._conversations = Conversations(
            self._open_session, max_conversations=self.cached_conversations, max_tokens=sys.maxsize
        )

    @model_validator(mode="after")
    def _check_generation_options(self) -> OneGenLLM:
        """Refuse values `GenerationOptions` refuses, with its message (e.g. a negative temperature)."""
        GenerationOptions(**self._generation_options())
        return self

    def _generation_options(self) -> dict[str, Any]:
        """The fields as `GenerationOptions` values (the options a call may override)."""
        return {name: getattr(self, name) for name in _CALL_OPTIONS}

    @classmethod
    def class_name(cls) -> str:
        return "OneGenLLM"

    @property
    def model(self) -> OneGenModel:
        """The shared model."""
        return self._model

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self._model.context_window,
            num_output=self.max_new_tokens,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=self._model.name,
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Answer `prompt` as one user message (the chat template is always applied)."""
        return self._complete(prompt, kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream the answer to `prompt`; each response holds the text so far and its delta."""
        return completion_responses(self._turn(Dialogue(prompt), None, kwargs))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer the last (user or tool) message; the history is fed in one forward pass.

        With `tools=` (and `tool_required`, `tool_choice`, `allow_parallel_tool_calls`, as
        `chat_with_tools` passes them) the answer may call them.
        """
        return self._chat(messages, kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream the answer to the last message; calls come as `ToolCallBlock`s, never as deltas."""
        return self._chat_stream(messages, kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """`complete`, computed in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self._complete, prompt, kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """`stream_complete`, computed in a worker thread so the event loop stays free."""
        return iterate_in_thread(completion_responses(self._turn(Dialogue(prompt), None, kwargs)))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """`chat`, computed in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self._chat, messages, kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """`stream_chat`, computed in a worker thread so the event loop stays free."""
        return iterate_in_thread(self._chat_stream(messages, kwargs))

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Tool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The `chat` arguments that offer `tools`: the history, then `user_msg`; `kwargs` (a
        `tool_choice`, generation options) go along."""
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str) else user_msg
            )
        return {
            "messages": messages,
            "tools": [tool_spec(tool) for tool in tools],
            "tool_required": tool_required,
            "allow_parallel_tool_calls": allow_parallel_tool_calls,
            **kwargs,
        }

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The calls of a response; with `error_on_no_tool_call`, none raises `NoToolCallError`
        (which quotes a call the model wrote that does not parse)."""
        return tool_selections(response.message, error_on_no_tool_call)

    def _complete(self, prompt: str, kwargs: dict[str, Any]) -> CompletionResponse:
        done = run_to_end(self._turn(Dialogue(prompt), None, kwargs))
        return CompletionResponse(text=done.text, raw=turn_metadata(done))

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        offer = take_offer(kwargs)
        done = run_to_end(self._turn(to_dialogue(messages), offer, kwargs, messages))
        return ChatResponse(message=answer_message(done, offer), raw=turn_metadata(done))

    def _chat_stream(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponseGen:
        offer = take_offer(kwargs)
        return chat_responses(self._turn(to_dialogue(messages), offer, kwargs, messages), offer)

    def _turn(
        self,
        dialogue: Dialogue,
        offer: ToolOffer | None,
        overrides: dict[str, Any],
        messages: Sequence[ChatMessage] = (),
    ) -> Iterator[Event]:
        """Start answering `dialogue.message` with per-call options and the offered tools."""
        refuse_prompted_agents(messages)
        overrides = {k: v for k, v in overrides.items() if k != "formatted"}
        unknown = sorted(set(overrides) - set(_CALL_OPTIONS))
        if unknown:
            raise TypeError(f"OneGenLLM got unknown options {unknown}; per call it accepts {list(_CALL_OPTIONS)}")
        options: dict[str, Any] = {**self._generation_options(), **overrides}
        if offer:
            own = self.system_prompt if self.system_prompt is not None else self._model.config.system_prompt
            dialogue, options["prefix"] = offer.dialogue(dialogue, own), offer.prefix
        elif dialogue.system_prompt is None:
            dialogue = dataclasses.replace(dialogue, system_prompt=self.system_prompt)
        lease = self._conversations.lease(dialogue)
        try:
            lease.session.reseed(self.seed)  # sampling goes as in a new session
            events = lease.session.send(dialogue.message, **options)
        except BaseException:
            self._conversations.give_back(lease)
            raise
        return self._given_back_after(events, lease)

    def _open_session(self, dialogue: Dialogue) -> OneGenSession:
        """A new retrieval-free session holding `dialogue`'s history."""
        return dialogue.open(
            self._model, None, seed=self.seed, retrieval="never", logits_processor=self._logits_processor
        )

    def _given_back_after(self, events: Iterator[Event], lease: Lease) -> Iterator[Event]:
        """`events`; once they end, or the reader stops, the session is cached for the next call."""
        try:
            yield from events
        finally:
            self._conversations.give_back(lease)
