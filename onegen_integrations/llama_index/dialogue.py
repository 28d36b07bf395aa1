"""`Dialogue`: a LlamaIndex message list in the shape the engine takes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from onegen_integrations.chat_format import Message
from onegen_integrations.errors import EmptyTextError
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY, join_messages, retrievals_from_json
from onegen_integrations.retrieval import Retriever
from onegen_integrations.session import OneGenSession

_SYSTEM_ROLES = {MessageRole.SYSTEM, MessageRole.DEVELOPER}
_ASSISTANT_ROLES = {MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL}


@dataclass(frozen=True)
class Dialogue:
    """A system prompt, earlier turns, and the new user message.

    The engine answers one user message per turn over a cache that holds the earlier turns;
    a LlamaIndex caller hands over a whole message list instead. `from_messages` splits it:
    system and developer messages become the system prompt, tool and function results count
    as user text, consecutive messages of one side are joined. An answer's retrievals ride
    in its `additional_kwargs[RETRIEVALS_KEY]` (every OneGen answer carries them), so the
    session opened from the dialogue puts each `[RQ]` and its passages back where they were.

    Example:
        dialogue = Dialogue.from_messages([ChatMessage(role="user", content="Hi")])
        session = dialogue.open(model, retrieval="never")
        answer = session.ask(dialogue.message).text
    """

    message: str
    """The user message to answer."""
    history: list[Message] = field(default_factory=list)
    """Earlier turns as alternating user and assistant messages, user first; an answer whose
    retrievals are known carries them under `RETRIEVALS_KEY` (see `replay`)."""
    system_prompt: str | None = None
    """The system message; None leaves the session's default."""

    @classmethod
    def from_messages(cls, messages: Sequence[ChatMessage]) -> Dialogue:
        """Split a message list whose last message is the user's.

        Raises `ReplayFormatError` when an answer's `RETRIEVALS_KEY` is not what OneGen wrote.
        """
        system: list[str] = []
        sides: list[Message] = []
        for message in messages:
            text = message.content or ""
            if message.role in _SYSTEM_ROLES:
                system.append(text)
                continue
            side: Message = {"role": "assistant" if message.role in _ASSISTANT_ROLES else "user", "content": text}
            past = message.additional_kwargs.get(RETRIEVALS_KEY)
            if side["role"] == "assistant" and past is not None:
                retrievals_from_json(past)  # a bad value is refused here, naming the key
                side[RETRIEVALS_KEY] = past
            if sides and sides[-1]["role"] == side["role"]:
                sides[-1] = join_messages(sides[-1], side)
            else:
                sides.append(side)
        if not sides or sides[-1]["role"] == "assistant":
            raise ValueError(
                "the last message must be the user's: the engine answers a user message "
                "(append ChatMessage(role='user', content=...))"
            )
        if not sides[-1]["content"].strip():
            raise EmptyTextError("the user message is empty: send some text")
        if sides[0]["role"] == "assistant":
            sides.insert(0, {"role": "user", "content": ""})
        return cls(sides[-1]["content"], sides[:-1], "\n\n".join(system) if system else None)

    def same_history(self, held: Sequence[Message]) -> bool:
        """Whether `held` (a session's `messages`) is this dialogue's history: the same texts,
        and the same passages after the same text wherever this dialogue records an answer's
        retrievals. An answer without them keeps what the session holds."""
        if [(m["role"], m["content"]) for m in held] != [(m["role"], m["content"]) for m in self.history]:
            return False
        return all(
            RETRIEVALS_KEY not in mine or _insertions(mine) == _insertions(theirs)
            for mine, theirs in zip(self.history, held)
        )

    def open(self, model: OneGenModel, retriever: Retriever | None = None, **options: Any) -> OneGenSession:
        """A new session with the history queued for its cache, ready to `send(self.message)`.

        `options` are `OneGenSession` arguments; this dialogue's system prompt, when it has
        one, replaces `options["system_prompt"]`. Answers with retrievals get their `[RQ]`
        and passages back; for answers without, a session that retrieves decides again (see
        `OneGenSession.add_turn`). The rest is fed with the first `send`, in one forward pass.
        """
        if self.system_prompt is not None:
            options["system_prompt"] = self.system_prompt
        session = model.session(retriever, **options)
        session.load_history(self.history)
        return session


def _insertions(message: Message) -> list[tuple[int, list[tuple[str, str]]]] | None:
    """Where an answer's passages stand and which they are (scores aside: a replay may
    compute them in the seventh digit differently)."""
    if RETRIEVALS_KEY not in message:
        return None
    return [(p.offset, [(h.id, h.text) for h in p.hits]) for p in retrievals_from_json(message[RETRIEVALS_KEY])]
