"""`Dialogue`: a chat history in the shape the engine takes it, whichever framework it came from.

The engine answers one user message per turn over a cache that holds the earlier turns; a
framework hands over the whole conversation on every call instead. Each adapter maps its
message types to `Turn`s (a role, the text, an answer's retrievals) and `Dialogue.from_turns`
splits them by one set of rules into a system prompt, earlier turns and the message to answer.
An answer that carries its retrievals (`RETRIEVALS_KEY`, as every OneGen answer does) is
replayed with its `[RQ]` and passages where the live answer had them, so follow-ups retrieve
as they would have in the live session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from onegen_integrations.chat_format import Message
from onegen_integrations.errors import EmptyTextError
from onegen_integrations.replay import RETRIEVALS_KEY, join_messages, retrievals_from_json

if TYPE_CHECKING:
    from onegen_integrations.model import OneGenModel
    from onegen_integrations.retrieval import Retriever
    from onegen_integrations.session import OneGenSession

Role = Literal["system", "user", "assistant"]
"""Who said a turn: the engine's three chat-template roles."""

ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation in the engine's terms, as an adapter maps it."""

    role: Role
    """`system`, `user` or `assistant`; an adapter maps tool and function results to `user`."""
    text: str
    """The message text."""
    retrievals: Any = None
    """An answer's `RETRIEVALS_KEY` value as its message carries it (`replay.retrievals_to_json`);
    None when they are unknown. Only assistant turns keep it."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"a turn's role must be one of {', '.join(ROLES)}, not {self.role!r}")


@dataclass(frozen=True)
class Dialogue:
    """A system prompt, earlier turns, and the new user message.

    Build one with `from_turns` (or an adapter's `messages.to_dialogue`), then `open` a
    session holding the history and send it `message`.

    Example:
        dialogue = Dialogue.from_turns([Turn("system", "Be brief."), Turn("user", "Hi")])
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
    def from_turns(
        cls, turns: Iterable[Turn], *, user_message: str = "the user's", append: str = "a user message"
    ) -> Dialogue:
        """Split a conversation whose last turn is the user's.

        System turns join (blank line between) into the system prompt, even when empty; no
        system turn leaves None. Consecutive turns of one side join into one message; an
        answer's retrievals go with its turn, and joined answers keep them only if each part
        has them. A conversation opening with the assistant gets an empty first user message.
        Raises `ReplayFormatError` when an answer's retrievals are not what OneGen writes,
        `ValueError` when the last turn is not the user's, and `EmptyTextError` when the user
        message is empty. `user_message` and `append` put that `ValueError` in the caller's
        framework's terms: what it calls a user message, and how to write one.
        """
        system: list[str] = []
        sides: list[Message] = []
        for turn in turns:
            if turn.role == "system":
                system.append(turn.text)
                continue
            side: Message = {"role": turn.role, "content": turn.text}
            if turn.role == "assistant" and turn.retrievals is not None:
                retrievals_from_json(turn.retrievals)  # a bad value is refused here, naming the key
                side[RETRIEVALS_KEY] = turn.retrievals
            if sides and sides[-1]["role"] == side["role"]:
                sides[-1] = join_messages(sides[-1], side)
            else:
                sides.append(side)
        if not sides or sides[-1]["role"] != "user":
            raise ValueError(
                f"the last message must be {user_message}: the engine answers a user message (append {append})"
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
