"""`OneGenChatEngine`: a multi-turn chat over one KV cache, retrieving where the model emits `[RQ]`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core import Settings
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine.types import (
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore

from onegen_integrations.dialogue import Dialogue
from onegen_integrations.events import Event
from onegen_integrations.llama_index.engine_retriever import EngineRetriever
from onegen_integrations.llama_index.index import FromIndex
from onegen_integrations.llama_index.llm_events import model_dict, prompt_messages, reported_as_llm_call
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.llama_index.streams import chat_responses, iterate_in_thread, run_to_end, turn_metadata
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY
from onegen_integrations.session import OneGenSession


class OneGenChatEngine(FromIndex, BaseChatEngine):
    """A chat engine that keeps the whole conversation in one KV cache.

    Each message is appended to the cache of the turns before it and answered in one pass:
    when the model emits `[RQ]`, the hidden state there (which has attended to the whole
    dialogue) is the query vector for the LlamaIndex retriever, so a follow-up like "when
    was she born?" needs no condense or rewrite step and no extra LLM call. Each response's
    `source_nodes` are that turn's retrievals; `metadata` (plain JSON) holds the finish
    reason, the token usage and the retrievals under `RETRIEVALS_KEY`.

    Args:
        model: the shared `OneGenModel` (the one that embedded the index).
        retriever: any LlamaIndex retriever, e.g. `index.as_retriever(similarity_top_k=1)`.
        node_postprocessors: applied to each retrieval's nodes before insertion.
        system_prompt: the system message (default: the model's).
        callback_manager: gets each turn as an `LLM` event (default: `Settings.callback_manager`),
            so `TokenCountingHandler` counts it.
        **options: `OneGenSession` options, e.g. `max_new_tokens`, `retrieval`, `stop`.

    Passing `chat_history` to `chat` replaces the conversation; the cache is kept when the
    history is the one it already holds, and rebuilt (one forward pass) otherwise. Answers in
    `chat_history` that carry `additional_kwargs[RETRIEVALS_KEY]` (every answer of
    `engine.chat_history` does) get their `[RQ]` and passages back, so a fresh engine given
    the history retrieves on follow-ups as the live one does. A stream left unfinished is
    closed when the next message arrives; its text so far stays in the history.

    Example:
        engine = OneGenChatEngine.from_index(index, max_new_tokens=64)
        print(engine.chat("Who founded the Varenne Institute?"))
        response = engine.stream_chat("Where was she born?")
        response.print_response_stream()
    """

    def __init__(
        self,
        model: OneGenModel,
        retriever: BaseRetriever,
        *,
        node_postprocessors: Sequence[BaseNodePostprocessor] = (),
        system_prompt: str | None = None,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> None:
        self.model = model
        self.callback_manager = callback_manager or Settings.callback_manager
        self.retriever = EngineRetriever(retriever, node_postprocessors)
        self.system_prompt = system_prompt
        self.options = options
        self._session = model.session(self.retriever, system_prompt=system_prompt, **options)
        self._session_system_prompt = system_prompt
        self._open_turn: Iterator[Event] | None = None

    @property
    def session(self) -> OneGenSession:
        """The engine session whose cache holds the conversation."""
        return self._session

    @property
    def chat_history(self) -> list[ChatMessage]:
        """The conversation so far; each answer carries its retrievals in
        `additional_kwargs[RETRIEVALS_KEY]` (the passages are not in its text)."""
        return [
            ChatMessage(
                role=MessageRole(m["role"]),
                content=m["content"],
                additional_kwargs={RETRIEVALS_KEY: m[RETRIEVALS_KEY]} if RETRIEVALS_KEY in m else {},
            )
            for m in self._session.messages
        ]

    def reset(self) -> None:
        """Forget the conversation (and empty the cache)."""
        self._close_open_turn()
        self._session.reset()

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        """Answer `message` after the conversation (or after `chat_history`, if given)."""
        nodes, events = self.start_turn(self._dialogue(message, chat_history))
        done = run_to_end(events)
        return AgentChatResponse(response=done.text, source_nodes=nodes, metadata=turn_metadata(done))

    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> StreamingAgentChatResponse:
        """Stream the answer; `source_nodes` fill as the model retrieves."""
        nodes, events = self.start_turn(self._dialogue(message, chat_history))
        return StreamingAgentChatResponse(
            chat_stream=chat_responses(events), source_nodes=nodes, is_writing_to_memory=False
        )

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        """`chat`, computed in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.chat, message, chat_history)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        """`stream_chat` for asyncio: iterate `response.async_response_gen()`."""
        nodes, events = self.start_turn(self._dialogue(message, chat_history))
        return StreamingAgentChatResponse(
            achat_stream=iterate_in_thread(chat_responses(events)), source_nodes=nodes, is_writing_to_memory=False
        )

    def start_turn(self, dialogue: Dialogue, **overrides: Any) -> tuple[list[NodeWithScore], Iterator[Event]]:
        """Begin answering `dialogue.message` after `dialogue.history`.

        Returns the list the turn's retrieved nodes will fill and the turn's (lazy) engine
        events. The cache is reused when it holds exactly that history and system prompt.
        `overrides` are `GenerationOptions` for this turn (e.g. the `prefix` a tool call forces).
        """
        self._close_open_turn()
        system_prompt = self.system_prompt if dialogue.system_prompt is None else dialogue.system_prompt
        if system_prompt != self._session_system_prompt or not dialogue.same_history(self._session.messages):
            options = {**self.options, "system_prompt": system_prompt}
            self._session = dialogue.open(self.model, self.retriever, **options)
            self._session_system_prompt = system_prompt
        nodes = self.retriever.new_turn()
        shown_system = self.model.config.system_prompt if system_prompt is None else system_prompt
        self._open_turn = reported_as_llm_call(
            self._session.send(dialogue.message, **overrides),
            prompt_messages(shown_system, self._session.messages, dialogue.message),
            self.callback_manager,
            model_dict(self, self.model.name, self.options),
        )
        return nodes, self._open_turn

    def _dialogue(self, message: str, chat_history: list[ChatMessage] | None) -> Dialogue:
        self._close_open_turn()  # so the history holds an abandoned stream's text, as the cache does
        history = self.chat_history if chat_history is None else chat_history
        return to_dialogue([*history, ChatMessage(role=MessageRole.USER, content=message)])

    def _close_open_turn(self) -> None:
        """End a streamed turn the caller stopped reading, so the session is free again."""
        if self._open_turn is not None:
            self._open_turn.close()  # type: ignore[attr-defined]
            self._open_turn = None
