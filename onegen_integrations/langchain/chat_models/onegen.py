"""`ChatOneGen`: a OneGen model as a LangChain chat model (plain generation; the chains add retrieval)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams, generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field, model_validator

from onegen_integrations.dialogue import Dialogue
from onegen_integrations.errors import InvalidOptionError
from onegen_integrations.events import DoneEvent, FinishReason, TokenEvent
from onegen_integrations.langchain.messages import to_dialogue
from onegen_integrations.langchain.shared_model import UsesOneGenModel
from onegen_integrations.options import DEFAULTS, GenerationOptions
from onegen_integrations.replay import RETRIEVALS_KEY, retrievals_to_json
from onegen_integrations.retrieval import Retriever
from onegen_integrations.session import OneGenSession

_FINISH_REASONS: dict[FinishReason, str] = {"eos": "stop", "stop": "stop", "length": "length", "context": "length"}
_CALL_OPTIONS = {"max_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k"}
"""Per-call options (also fields of the model), as the engine's `GenerationOptions` calls them."""
_FIELD_NAMES = {option: name for name, option in _CALL_OPTIONS.items()}


class ChatOneGen(UsesOneGenModel, BaseChatModel):
    """A OneGen model (e.g. the embedded SmolLM2-135M default) as a LangChain chat model.

    Runs the OneGen engine in-process with retrieval off: the messages become a dialogue
    (system prompt, earlier turns, the last human message) that is fed once and answered by
    greedy or sampled decoding. For retrieval inside generation use `OneGenRAGChain` or
    `OneGenChatChain`, which run this model with a retriever (as a child chat-model run, so
    tracing sees the messages, tokens and usage). Tool calling is not supported (`bind_tools`
    raises `NotImplementedError`): a 135M model without tool training cannot produce reliable
    tool calls.

    Every answer carries its retrievals in `additional_kwargs["onegen_retrievals"]` (an empty
    list here, where nothing is retrieved): passed back in a later conversation, an answer is
    replayed with its `[RQ]` and passages where it had them, so follow-ups retrieve the same
    way whether the application keeps a session or sends the whole history each time.

    Setup:
        Install `onegen-integrations[langchain]`. Construction is cheap: the weights load on
        first use, once per process per model name, or pass an already loaded `OneGenModel`
        (the same object `OneGenEmbeddings` wraps).

    Key init args:
        onegen_model: an already loaded `OneGenModel`.
        model: `"default"` or a model directory, when `onegen_model` is not given.
        max_tokens: most new tokens per answer (the engine's `max_new_tokens`).
        temperature: 0 for greedy decoding; `top_p`, `top_k` and `seed` shape sampling.
        stop: strings that end the answer.
        session (per call): an engine `OneGenSession` that already holds the earlier turns,
            to answer the last message over instead of a new session; the chains pass theirs.

    Defaults and allowed values are the engine's `GenerationOptions`': a value it refuses
    raises at construction, or when the call starts if it was passed per call.

    Example:
        ```python
        from onegen_integrations.langchain import ChatOneGen

        chat = ChatOneGen(model="default", max_tokens=64)
        chat.invoke([("system", "Answer in one sentence."), ("human", "What is a harbour?")])
        for chunk in chat.stream("Say hello."):
            print(chunk.text, end="")
        ```
    """

    # Defaults and allowed values are the engine's `GenerationOptions`' (checked below).
    max_tokens: int = Field(default=DEFAULTS.max_new_tokens)
    """Most new tokens per answer (a call may pass `max_tokens=`)."""
    temperature: float = Field(default=DEFAULTS.temperature)
    """Sampling temperature; 0 is greedy decoding (a call may pass `temperature=`)."""
    top_p: float = Field(default=DEFAULTS.top_p)
    """Nucleus sampling mass when sampling (a call may pass `top_p=`)."""
    top_k: int = Field(default=DEFAULTS.top_k)
    """Sample only from the k most likely tokens, 0 for all (a call may pass `top_k=`)."""
    stop: list[str] | None = None
    """Strings that end the answer, added to those a call passes."""
    seed: int | None = None
    """Seeds sampling, so a sampled answer can be repeated."""
    system_prompt: str | None = None
    """System message for conversations without one (None: the model's own from `onegen.json`)."""

    @model_validator(mode="after")
    def _check_generation_options(self) -> ChatOneGen:
        """Refuse values `GenerationOptions` refuses, with its message under this model's field names."""
        with _under_field_names():
            GenerationOptions(**self._generation_options())
        return self

    def _generation_options(self) -> dict[str, Any]:
        """The fields as `GenerationOptions` values."""
        return {
            **{option: getattr(self, name) for name, option in _CALL_OPTIONS.items()},
            "stop": tuple(self.stop or ()),
        }

    @property
    def _llm_type(self) -> str:
        return "onegen-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="onegen",
            ls_model_name=kwargs.get("model", self.model_name),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if stops := [*(self.stop or []), *(stop or [])]:
            params["ls_stop"] = stops
        return params

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> NoReturn:
        """Not supported: OneGen models are not trained to call tools."""
        raise NotImplementedError(
            "ChatOneGen does not support tool calling: the model was not trained to emit tool calls. "
            "Use create_agent(model, tools=[]) for a plain chatbot, OneGenChatChain for retrieval, or a "
            "tool-calling chat model for agents with tools"
        )

    def start_session(
        self, dialogue: Dialogue | None = None, retriever: Retriever | None = None, **options: Any
    ) -> OneGenSession:
        """A new engine session with this model's settings, holding `dialogue`'s system prompt and earlier turns.

        `options` override the engine's `GenerationOptions` (e.g. `k=2`). Without a retriever
        the session never retrieves; with one, the engine's default applies (`auto` for a
        trained model, `always` for an untrained one).
        """
        settings: dict[str, Any] = {**self._generation_options(), "seed": self.seed}
        if retriever is None:
            settings["retrieval"] = "never"
        settings.update(options)
        if dialogue is None:
            return self.load_model().session(retriever, system_prompt=self.system_prompt, **settings)
        return dialogue.open(self.load_model(), retriever, system_prompt=self.system_prompt, **settings)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        # A session passed by a chain is an object, not a parameter: keep it out of traces.
        kwargs.pop("session", None)
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        session: OneGenSession | None = kwargs.pop("session", None)
        unknown = set(kwargs) - set(_CALL_OPTIONS)
        if unknown:
            raise TypeError(
                f"ChatOneGen does not take {', '.join(sorted(unknown))}: per call it takes stop, "
                f"{', '.join(_CALL_OPTIONS)}"
            )
        options: dict[str, Any] = {_CALL_OPTIONS[name]: value for name, value in kwargs.items()}
        if stop:
            options["stop"] = (*(self.stop or ()), *stop)
        dialogue = to_dialogue(messages)
        if session is None:
            session = self.start_session(dialogue)
        with _under_field_names():
            events = session.send(dialogue.message, **options)
        for event in events:
            if isinstance(event, TokenEvent):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event.text))
                if run_manager:
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
            elif isinstance(event, DoneEvent):
                yield self._last_chunk(event)

    def _last_chunk(self, done: DoneEvent) -> ChatGenerationChunk:
        """The closing chunk: no text; the usage, why the answer ended, and what it retrieved.

        Input tokens are everything the answer was conditioned on: the new message, the
        dialogue already in the cache (`cache_read`) and the inserted passages.
        """
        used = done.usage
        read = used.prompt_tokens + used.cached_tokens + used.rebuilt_tokens + used.inserted_tokens
        usage = UsageMetadata(
            input_tokens=read,
            output_tokens=used.completion_tokens,
            total_tokens=read + used.completion_tokens,
            input_token_details={"cache_read": used.cached_tokens},
        )
        metadata = {"model_name": self.model_name, "finish_reason": _FINISH_REASONS[done.finish_reason]}
        message = AIMessageChunk(
            content="",
            additional_kwargs={RETRIEVALS_KEY: retrievals_to_json(done.retrievals)},
            usage_metadata=usage,
            response_metadata=metadata,
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message, generation_info=metadata)


@contextmanager
def _under_field_names() -> Iterator[None]:
    """Report an invalid option by the name ChatOneGen takes it by (`max_tokens`, not `max_new_tokens`)."""
    try:
        yield
    except InvalidOptionError as error:
        raise error.renamed(_FIELD_NAMES.get(error.option, error.option)) from None
