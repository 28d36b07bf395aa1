"""LangChain message lists as an engine dialogue: system prompt, earlier turns, the new question.

The engine answers one user message per turn over a cache of the turns before it. A LangChain
chat model is handed the whole conversation on every call, so the earlier turns are loaded
into a fresh session (`OneGenSession.load_history`) and fed with the new message in one
forward pass. An AI message that carries its retrievals (`onegen_retrievals` in
`additional_kwargs`, as every OneGen answer does, or in `response_metadata`) is replayed with
its `[RQ]` and passages where the live answer had them, so follow-ups retrieve as they would
have in the live session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from onegen_integrations.chat_format import Message
from onegen_integrations.replay import RETRIEVALS_KEY, join_messages

_ROLES: dict[type[BaseMessage], str] = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}
_JOIN = "\n\n"


@dataclass(frozen=True)
class Dialogue:
    """A conversation in the engine's terms."""

    question: str
    """The last user message: the one to answer."""
    history: list[Message] = field(default_factory=list)
    """Earlier turns, alternating user and assistant, starting with a user message; an
    assistant turn whose retrievals are known holds them under `RETRIEVALS_KEY`."""
    system: str | None = None
    """The system prompt the messages give, if any."""


def to_dialogue(messages: Sequence[BaseMessage]) -> Dialogue:
    """Split LangChain messages into a `Dialogue`.

    System messages join into the system prompt; consecutive messages of one role join into
    one message; a conversation opening with the assistant gets an empty first user message.
    An AI message's `onegen_retrievals` (from `additional_kwargs`, else `response_metadata`)
    goes with its turn; joined AI messages keep them only if each part has them.
    Raises `ValueError` when the last message is not from the user, `NotImplementedError` for
    tool calls, tool results and non-text content, which OneGen models do not handle.
    """
    system: list[str] = []
    turns: list[Message] = []
    for message in messages:
        role = _role(message)
        text = message.text
        if role == "system":
            system.append(text)
            continue
        turn: Message = {"role": role, "content": text}
        if role == "assistant" and (past := retrievals_of(message)) is not None:
            turn[RETRIEVALS_KEY] = past
        if turns and turns[-1]["role"] == role:
            turns[-1] = join_messages(turns[-1], turn, _JOIN)
        else:
            if not turns and role == "assistant":
                turns.append({"role": "user", "content": ""})
            turns.append(turn)
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("the last message must be a human message: it is the one the model answers")
    return Dialogue(question=turns[-1]["content"], history=turns[:-1], system=_JOIN.join(system) or None)


def retrievals_of(message: BaseMessage) -> Any:
    """The `onegen_retrievals` an AI message carries, or None when its retrievals are unknown."""
    for metadata in (message.additional_kwargs, message.response_metadata):
        if RETRIEVALS_KEY in metadata:
            return metadata[RETRIEVALS_KEY]
    return None


def _role(message: BaseMessage) -> str:
    role = next((name for kind, name in _ROLES.items() if isinstance(message, kind)), None)
    if role is None:
        raise NotImplementedError(
            f"{type(message).__name__} is not supported: OneGen chat models take system, human "
            "and AI messages only (no tool calling)"
        )
    if isinstance(message, AIMessage) and message.tool_calls:
        raise NotImplementedError("AI messages with tool calls are not supported: OneGen models do not call tools")
    if isinstance(message.content, list) and any(
        isinstance(block, dict) and block.get("type") != "text" for block in message.content
    ):
        raise NotImplementedError("only text content is supported: remove image, audio and file blocks")
    return role
