"""`ChatOneGen`: a OneGen model as a LangChain chat model, with tool calling and optional retrieval."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr, model_validator

from onegen_integrations.conversations import Conversations
from onegen_integrations.dialogue import Dialogue
from onegen_integrations.errors import InvalidOptionError, UnsupportedFrameworkError
from onegen_integrations.events import DoneEvent, FinishReason, TokenEvent
from onegen_integrations.langchain.messages import AnswerChunks, to_dialogue
from onegen_integrations.langchain.retrievers.engine import EngineRetriever, check_searchable
from onegen_integrations.langchain.retrievers.onegen import OneGenRetriever
from onegen_integrations.langchain.shared_model import UsesOneGenModel
from onegen_integrations.options import DEFAULTS, GenerationOptions
from onegen_integrations.replay import RETRIEVALS_KEY, retrievals_to_json
from onegen_integrations.retrieval import Retriever
from onegen_integrations.session import LogitsProcessor, OneGenSession
from onegen_integrations.tools import ToolChoice, ToolOffer, ToolSpec

_FINISH_REASONS: dict[FinishReason, str] = {"eos": "stop", "stop": "stop", "length": "length", "context": "length"}
_CALL_OPTIONS = {"max_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k"}
"""Per-call options (also fields of the model), as the engine's `GenerationOptions` calls them."""
_FIELD_NAMES = {option: name for name, option in _CALL_OPTIONS.items()}
_TEXT_AGENT_STOP = "\nObservation"
"""The stop sequence of langchain-classic's text agents (ReAct, JSON and structured chat)."""
_NO_TEXT_AGENTS = (
    "ChatOneGen cannot follow a text agent's prompt (tool calls written as Action: lines, a format "
    "OneGen models never learned): use create_agent(ChatOneGen(...), tools=[...]), which calls tools "
    "through bind_tools"
)
_NO_JSON_MODE = (
    "ChatOneGen has no JSON mode (response_format): use with_structured_output(schema), or "
    "create_agent(..., response_format=ToolStrategy(schema)); both make the model call a tool"
)


class ChatOneGen(UsesOneGenModel, BaseChatModel):
    """A OneGen model (e.g. the embedded SmolLM2-135M default) as a LangChain chat model.

    Runs the OneGen engine in-process: the messages become a dialogue (system prompt, earlier
    turns, the last human or tool message) answered by greedy or sampled decoding. With a
    `retriever` the model retrieves inside its answer at each `[RQ]` it emits; without one it
    never retrieves (`OneGenRAGChain` and `OneGenChatChain` run it with theirs).

    Tools: `bind_tools` offers tools in the system prompt (OneGen's tool format,
    `onegen_integrations.tools`); calls the model writes come back as `AIMessage.tool_calls`
    (`tool_call_chunks` when streaming) and tool messages go back in as the next user turn,
    so `create_agent(ChatOneGen(...), tools=[...])` works. `tool_choice` is `"auto"`,
    `"any"`/`"required"`, `"none"` or a tool's name; a required call is forced by making
    the answer start with it. `with_structured_output` works through a forced call.

    The KV caches of the last `cached_conversations` conversations are kept: a call whose
    messages continue one (its earlier messages plus new ones, as agents and LangGraph send
    them) feeds only the new messages. The cache is only a cache: any message list gets the
    answer a fresh session would give.

    Every answer carries its retrievals in `additional_kwargs["onegen_retrievals"]`: passed
    back in a later conversation, an answer is replayed with its `[RQ]` and passages where
    it had them, so follow-ups retrieve the same way whether the application keeps a
    session or sends the whole history each time.

    Setup:
        Install `onegen-integrations[langchain]`. Construction is cheap: the weights load on
        first use, once per process per model name, or pass an already loaded `OneGenModel`
        (the same object `OneGenEmbeddings` wraps). A `retriever` is checked against the
        model when the chat model is built.

    Key init args:
        onegen_model: an already loaded `OneGenModel`.
        model: `"default"` or a model directory, when `onegen_model` is not given.
        max_tokens: most new tokens per answer (the engine's `max_new_tokens`).
        temperature: 0 for greedy decoding; `top_p`, `top_k` and `seed` shape sampling.
        stop: strings that end the answer.
        retriever: a `OneGenRetriever` searched at each `[RQ]` (None: no retrieval).
        session (per call): an engine `OneGenSession` that already holds the earlier turns,
            to answer the last message over instead of a cached one; the chains pass theirs.

    Defaults and allowed values are the engine's `GenerationOptions`': a value it refuses
    raises at construction, or when the call starts if it was passed per call.

    Example:
        ```python
        from langchain_core.tools import tool
        from onegen_integrations.langchain import ChatOneGen

        @tool(description="The delivery status of an order.")
        def order_status(order_id: str) -> str:
            return "shipped"

        chat = ChatOneGen(model="default", max_tokens=64)
        chat.invoke([("system", "Answer in one sentence."), ("human", "What is a harbour?")])
        chat.bind_tools([order_status]).invoke("Where is order A-17?").tool_calls
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
    retriever: OneGenRetriever | None = Field(default=None, exclude=True)
    """Searched at each `[RQ]` the model emits, `retriever.k` documents inserted each time;
    None: the model never retrieves."""
    cached_conversations: int = Field(default=4, ge=0)
    """Conversations whose KV caches are kept between calls, least recently used dropped first."""
    logits_processor: LogitsProcessor | None = Field(default=None, exclude=True, repr=False)
    """Edits next-token logits in every session of this model (bans, biases, tests)."""

    _conversations: tuple[int, Conversations] | None = PrivateAttr(default=None)
    """The cached conversations and the `id` of the model they belong to (a copy starts its own)."""

    @model_validator(mode="after")
    def _check_generation_options(self) -> ChatOneGen:
        """Refuse values `GenerationOptions` refuses, with its message under this model's field names."""
        with _under_field_names():
            GenerationOptions(**self._generation_options())
        return self

    @model_validator(mode="after")
    def _check_retriever(self) -> ChatOneGen:
        """Refuse a retriever whose store another model filled."""
        if self.retriever is not None:
            check_searchable(self.retriever, self.load_model())
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

    def bind_tools(
        self,
        tools: Sequence[Mapping[str, Any] | type | Any],
        *,
        tool_choice: ToolChoice = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """This model with `tools` offered on every call.

        `tools`: anything `convert_to_openai_tool` takes (`@tool` functions, `BaseTool`s,
        pydantic models, functions, OpenAI schemas). `tool_choice`: None or `"auto"` (the
        model decides), `"any"`, `"required"` or True (it must call one), `"none"` (tools
        not offered), a tool's name or `{"type": "function", "function": {"name": ...}}`
        (it must call that one). Raises `ToolFormatError` for a tool the format cannot
        name or a choice naming no tool, and at the call for two tools of one name.
        """
        schemas = [convert_to_openai_tool(tool) for tool in tools]
        _offer(schemas, tool_choice)
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    def start_session(
        self, dialogue: Dialogue | None = None, retriever: Retriever | None = None, **options: Any
    ) -> OneGenSession:
        """A new engine session with this model's settings, holding `dialogue`'s system prompt and earlier turns.

        `options` override the engine's `GenerationOptions` (e.g. `k=2`). Without a retriever
        the session never retrieves; with one, the engine's default applies (`auto` for a
        trained model, `always` for an untrained one).
        """
        settings: dict[str, Any] = {
            **self._generation_options(),
            "seed": self.seed,
            "logits_processor": self.logits_processor,
        }
        if retriever is None:
            settings["retrieval"] = "never"
        settings.update(options)
        if dialogue is None:
            return self.load_model().session(retriever, system_prompt=self.system_prompt, **settings)
        return dialogue.open(self.load_model(), retriever, system_prompt=self.system_prompt, **settings)

    def _cached(self) -> Conversations:
        """This model's cached conversations, started on first use."""
        if self._conversations is None or self._conversations[0] != id(self):
            # Each cache is bounded by the context window; the count bounds them together.
            cache = Conversations(
                self._open_session, max_conversations=self.cached_conversations, max_tokens=sys.maxsize
            )
            self._conversations = (id(self), cache)
        return self._conversations[1]

    def _open_session(self, dialogue: Dialogue) -> OneGenSession:
        """A session holding `dialogue`'s history, retrieving from `retriever` when there is one."""
        if self.retriever is None:
            return self.start_session(dialogue)
        return self.start_session(dialogue, EngineRetriever(self.retriever), k=self.retriever.k)

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
        offer = _offer(kwargs.pop("tools", None) or (), kwargs.pop("tool_choice", None))
        options = self._call_options(stop, kwargs)
        dialogue = to_dialogue(messages)
        if offer:
            if session is not None:
                raise ValueError(
                    "tools are offered in the system prompt, which a session passed in already holds: "
                    "call without session= (ChatOneGen keeps the conversation's cache itself)"
                )
            own = self.system_prompt if self.system_prompt is not None else self.load_model().config.system_prompt
            dialogue, options["prefix"] = offer.dialogue(dialogue, own), offer.prefix
        if session is not None:
            yield from self._answer(session, dialogue.message, options, run_manager, calls=False)
            return
        conversations = self._cached()
        lease = conversations.lease(dialogue)
        try:
            lease.session.reseed(self.seed)  # as a fresh session would be seeded
            yield from self._answer(lease.session, dialogue.message, options, run_manager, calls=offer is not None)
        finally:
            conversations.give_back(lease)

    def _call_options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A call's options as `GenerationOptions` overrides; `UnsupportedFrameworkError` for
        `response_format` and a text agent's stop sequence, `TypeError` for any other keyword."""
        if "response_format" in kwargs:
            raise UnsupportedFrameworkError(_NO_JSON_MODE)
        if any(s.startswith(_TEXT_AGENT_STOP) for s in stop or ()):
            raise UnsupportedFrameworkError(_NO_TEXT_AGENTS)
        unknown = set(kwargs) - set(_CALL_OPTIONS)
        if unknown:
            raise TypeError(
                f"ChatOneGen does not take {', '.join(sorted(unknown))}: per call it takes stop, "
                f"{', '.join(_CALL_OPTIONS)}, tools and tool_choice"
            )
        options: dict[str, Any] = {_CALL_OPTIONS[name]: value for name, value in kwargs.items()}
        if stop:
            options["stop"] = (*(self.stop or ()), *stop)
        return options

    def _answer(
        self,
        session: OneGenSession,
        message: str,
        options: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | None,
        *,
        calls: bool,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream `session`'s answer to `message` as chunks: text, and with `calls` each tool call
        the model writes (never its text), then the closing chunk."""
        with _under_field_names():
            events = session.send(message, **options)
        chunks = AnswerChunks(calls=calls)
        try:
            for event in events:
                if isinstance(event, TokenEvent):
                    pieces = chunks.feed(event.text)
                elif isinstance(event, DoneEvent):
                    pieces = chunks.finish()
                else:
                    continue
                for message in pieces:
                    chunk = ChatGenerationChunk(message=message)
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
                if isinstance(event, DoneEvent):
                    yield self._last_chunk(event)
        finally:
            events.close()  # a caller that stops reading ends the turn, so the session is free again

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


def _offer(tools: Sequence[Any], tool_choice: ToolChoice) -> ToolOffer | None:
    """The tools offered to the model (None for none, or `tool_choice="none"`); raises
    `ToolFormatError` for a tool the format cannot name or a choice naming no tool."""
    return ToolOffer.of([ToolSpec.from_openai(convert_to_openai_tool(tool)) for tool in tools], tool_choice)
