"""`OneGenLLM`: the OneGen model as a LlamaIndex LLM (generation only, no retrieval)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
)
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, model_validator
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from onegen_integrations.dialogue import Dialogue
from onegen_integrations.events import DoneEvent
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.llama_index.streams import (
    answer_message,
    chat_responses,
    completion_responses,
    iterate_in_thread,
    turn_metadata,
)
from onegen_integrations.model import OneGenModel
from onegen_integrations.options import DEFAULTS, GenerationOptions
from onegen_integrations.session import OneGenSession

_CALL_OPTIONS = ("max_new_tokens", "temperature", "top_p", "top_k", "stop")


class OneGenLLM(CustomLLM):
    """A `OneGenModel` as a LlamaIndex LLM: chat-template generation, streaming, async.

    Wrap an already-loaded model, so `OneGenEmbedding(model)` and this LLM share one copy
    of the weights. Every call is a fresh engine session with retrieval off (`[RQ]` is never
    emitted); message lists are fed in the model's chat template, history first, and an
    answer in them that carries `additional_kwargs[RETRIEVALS_KEY]` (as the chat engine's
    and agent's answers do) is fed with its `[RQ]` and passages where they were. For
    retrieval inside generation use `OneGenQueryEngine` or `OneGenChatEngine`. A response's
    `raw` is plain JSON: finish reason, token usage (what `TokenCountingHandler` reads) and
    retrievals; a chat answer's message carries its (empty) retrievals too. Streams end with
    an empty-delta response that carries them.

    Key arguments: `max_new_tokens`, `temperature` (0: greedy), `top_p`, `top_k`, `stop`,
    `seed`, `system_prompt` (default: the model's); defaults and allowed values are the
    engine's `GenerationOptions`'. Per call, `max_new_tokens`, `temperature`, `top_p`,
    `top_k` and `stop` may be passed as keyword arguments, checked the same way.

    Example:
        model = OneGenModel.load("default")
        Settings.llm = OneGenLLM(model, max_new_tokens=64)
        Settings.embed_model = OneGenEmbedding(model)
        print(Settings.llm.complete("Name a colour.").text)
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

    _model: OneGenModel = PrivateAttr()

    def __init__(self, model: OneGenModel, **fields: Any) -> None:
        super().__init__(**fields)
        self._model = model

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
            model_name=self._model.name,
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Answer `prompt` as one user message (the chat template is always applied)."""
        done = self._answer(Dialogue(prompt), kwargs)
        return CompletionResponse(text=done.text, raw=turn_metadata(done))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream the answer to `prompt`; each response holds the text so far and its delta."""
        return self._completion_stream(Dialogue(prompt), kwargs)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer the last (user) message; the history is fed in one forward pass."""
        done = self._answer(to_dialogue(messages), kwargs)
        return ChatResponse(message=answer_message(done), raw=turn_metadata(done))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream the answer to the last (user) message."""
        return self._chat_stream(to_dialogue(messages), kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """`complete`, computed in a worker thread so the event loop stays free."""
        done = await asyncio.to_thread(self._answer, Dialogue(prompt), kwargs)
        return CompletionResponse(text=done.text, raw=turn_metadata(done))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """`stream_complete`, computed in a worker thread so the event loop stays free."""
        return iterate_in_thread(self._completion_stream(Dialogue(prompt), kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """`chat`, computed in a worker thread so the event loop stays free."""
        done = await asyncio.to_thread(self._answer, to_dialogue(messages), kwargs)
        return ChatResponse(message=answer_message(done), raw=turn_metadata(done))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """`stream_chat`, computed in a worker thread so the event loop stays free."""
        return iterate_in_thread(self._chat_stream(to_dialogue(messages), kwargs))

    def _answer(self, dialogue: Dialogue, overrides: dict[str, Any]) -> DoneEvent:
        return self._session(dialogue, overrides).ask(dialogue.message)

    def _completion_stream(self, dialogue: Dialogue, overrides: dict[str, Any]) -> CompletionResponseGen:
        return completion_responses(self._session(dialogue, overrides).send(dialogue.message))

    def _chat_stream(self, dialogue: Dialogue, overrides: dict[str, Any]) -> ChatResponseGen:
        return chat_responses(self._session(dialogue, overrides).send(dialogue.message))

    def _session(self, dialogue: Dialogue, overrides: dict[str, Any]) -> OneGenSession:
        """A retrieval-free session holding the dialogue's history, with per-call options."""
        overrides = {k: v for k, v in overrides.items() if k != "formatted"}
        unknown = sorted(set(overrides) - set(_CALL_OPTIONS))
        if unknown:
            raise TypeError(f"OneGenLLM got unknown options {unknown}; per call it accepts {list(_CALL_OPTIONS)}")
        options: dict[str, Any] = {**self._generation_options(), **overrides}
        return dialogue.open(
            self._model, None, system_prompt=self.system_prompt, seed=self.seed, retrieval="never", **options
        )
