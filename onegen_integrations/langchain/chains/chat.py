"""`OneGenChatChain`: a multi-turn chatbot that retrieves inside generation and keeps a KV cache per session."""

from __future__ import annotations

import threading

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import PrivateAttr

from onegen_integrations.langchain.chains.rag import ChainInput, OneGenRAGChain, read_chain_input
from onegen_integrations.replay import RETRIEVALS_KEY
from onegen_integrations.session import OneGenSession

SESSION_ID = ConfigurableFieldSpec(
    id="session_id",
    annotation=str,
    name="Session ID",
    description="Which conversation this message belongs to.",
    default="",
    is_shared=True,
)


class OneGenChatChain(OneGenRAGChain):
    """A chatbot: one-pass RAG over a conversation kept in the model's KV cache per session id.

    Each session id owns an engine session whose cache holds the whole dialogue, retrieved
    passages included. A follow-up ("Where was she born?") is appended to that cache and
    answered in one `send`: the `[RQ]` hidden state already attends to the earlier turns, so
    there is no history-aware query rewriting and no second model call. Pass the session id
    the way `RunnableWithMessageHistory` users do, in `config={"configurable": {"session_id": ...}}`;
    inside a LangGraph graph the run's `thread_id` serves when no `session_id` is given.

    Setup:
        Like `OneGenRAGChain`. Sessions live in memory, in this object; `end_session` frees one.
        Old turns are dropped when the context window fills (the engine's policy). Where the
        history must outlive the process (a message store, a LangGraph checkpointer), use
        `OneGenRAGChain` with the history as messages: it replays them into the same tokens.

    Key init args:
        llm: the chat model; its `max_tokens`, `temperature`, `stop` and `system_prompt` apply.
        retriever: searched at each `[RQ]`.
        retrieval: `"auto"`, `"always"`, or None for the engine's default.
        output: `"text"` or `"answer_and_context"`, as for `OneGenRAGChain`.

    Example:
        ```python
        chat = OneGenChatChain(llm=llm, retriever=retriever)
        config = {"configurable": {"session_id": "alice"}}
        chat.invoke("Who founded the Varenne Institute?", config)
        chat.invoke("Where was she born?", config)
        chat.history("alice")
        ```
    """

    _sessions: dict[str, OneGenSession] = PrivateAttr(default_factory=dict)
    _sessions_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """The `session_id` every call must configure."""
        return [*super().config_specs, SESSION_ID]

    def session(self, session_id: str) -> OneGenSession:
        """The engine session of `session_id`, started on first use."""
        with self._sessions_lock:
            if session_id not in self._sessions:
                self._sessions[session_id] = self.new_session()
            return self._sessions[session_id]

    def history(self, session_id: str) -> list[BaseMessage]:
        """The conversation of `session_id` as LangChain messages, each answer with its retrievals
        (`onegen_retrievals` in `additional_kwargs`): a chain given them as history replays them."""
        return _as_messages(self.session(session_id))

    def end_session(self, session_id: str) -> None:
        """Forget the conversation of `session_id` and free its cache."""
        with self._sessions_lock:
            self._sessions.pop(session_id, None)

    def _start_turn(self, input: ChainInput, config: RunnableConfig) -> tuple[OneGenSession, list[BaseMessage]]:
        messages = read_chain_input(input)
        if len(messages) > 1:
            raise ValueError(
                "OneGenChatChain keeps each session's history itself: pass only the question, and the "
                "session id in config={'configurable': {'session_id': ...}}"
            )
        configurable = config.get("configurable") or {}
        session_id = configurable.get("session_id") or configurable.get("thread_id")
        if not session_id:
            raise ValueError(
                "no session id: call with config={'configurable': {'session_id': 'some-id'}} (or a "
                "LangGraph thread_id) so the chain knows which conversation the message continues"
            )
        session = self.session(str(session_id))
        return session, [*_as_messages(session), messages[-1]]


def _as_messages(session: OneGenSession) -> list[BaseMessage]:
    """The session's dialogue; each answer keeps its retrievals, so the history can rebuild it."""
    return [
        HumanMessage(m["content"])
        if m["role"] == "user"
        else AIMessage(m["content"], additional_kwargs={RETRIEVALS_KEY: m[RETRIEVALS_KEY]})
        for m in session.messages
    ]
