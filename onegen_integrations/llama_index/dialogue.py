"""`Dialogue`: a LlamaIndex message list in the shape the engine takes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from onegen_integrations.errors import EmptyTextError
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Retriever
from onegen_integrations.session import OneGenSession

_SYSTEM_ROLES = {MessageRole.SYSTEM, MessageRole.DEVELOPER}
_ASSISTANT_ROLES = {MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL}


@dataclass(frozen=True)
class Dialogue:
    """A system prompt, earlier (user, answer) pairs, and the new user message.

    The engine answers one user message per turn over a cache that holds the earlier turns;
    a LlamaIndex caller hands over a whole message list instead. `from_messages` splits it:
    system and developer messages become the system prompt, tool and function results count
    as user text, consecutive messages of one side are joined.

    Example:
        dialogue = Dialogue.from_messages([ChatMessage(role="user", content="Hi")])
        session = dialogue.open(model, retrieval="never")
        answer = session.ask(dialogue.message).text
    """

    message: str
    """The user message to answer."""
    history: list[tuple[str, str]] = field(default_factory=list)
    """Earlier turns as (user message, answer) pairs, oldest first."""
    system_prompt: str | None = None
    """The system message; None leaves the session's default."""

    @classmethod
    def from_messages(cls, messages: Sequence[ChatMessage]) -> Dialogue:
        """Split a message list whose last message is the user's."""
        system: list[str] = []
        sides: list[tuple[bool, str]] = []  # (is_assistant, text), one side per entry
        for message in messages:
            text = message.content or ""
            if message.role in _SYSTEM_ROLES:
                system.append(text)
                continue
            assistant = message.role in _ASSISTANT_ROLES
            if sides and sides[-1][0] == assistant:
                sides[-1] = (assistant, f"{sides[-1][1]}\n\n{text}")
            else:
                sides.append((assistant, text))
        if not sides or sides[-1][0]:
            raise ValueError(
                "the last message must be the user's: the engine answers a user message "
                "(append ChatMessage(role='user', content=...))"
            )
        if not sides[-1][1].strip():
            raise EmptyTextError("the user message is empty: send some text")
        if sides[0][0]:
            sides.insert(0, (False, ""))
        pairs = [(sides[i][1], sides[i + 1][1]) for i in range(0, len(sides) - 1, 2)]
        return cls(sides[-1][1], pairs, "\n\n".join(system) if system else None)

    def same_history(self, session: OneGenSession) -> bool:
        """Whether `session` already holds exactly this dialogue's history."""
        held = session.messages
        return [(held[i]["content"], held[i + 1]["content"]) for i in range(0, len(held), 2)] == self.history

    def open(self, model: OneGenModel, retriever: Retriever | None = None, **options: Any) -> OneGenSession:
        """A new session with the history queued for its cache, ready to `send(self.message)`.

        `options` are `OneGenSession` arguments; this dialogue's system prompt, when it has
        one, replaces `options["system_prompt"]`. The history is fed with the first `send`,
        in one forward pass; nothing is generated for it.
        """
        if self.system_prompt is not None:
            options["system_prompt"] = self.system_prompt
        session = model.session(retriever, **options)
        for user, answer in self.history:
            session.add_turn(user, answer)
        return session
