"""LangChain message lists as an engine `Dialogue`: each message's type mapped to a turn.

A LangChain chat model is handed the whole conversation on every call; the core `Dialogue`
splits it into a system prompt, earlier turns and the new question, and loads the earlier
turns into a fresh session fed with the new message in one forward pass. An AI message that
carries its retrievals (`onegen_retrievals` in `additional_kwargs`, as every OneGen answer
does, or in `response_metadata`) is replayed with its `[RQ]` and passages where the live
answer had them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from onegen_integrations.dialogue import Dialogue, Role, Turn
from onegen_integrations.replay import RETRIEVALS_KEY

_ROLES: dict[type[BaseMessage], Role] = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}


def to_dialogue(messages: Sequence[BaseMessage]) -> Dialogue:
    """Split LangChain messages into a `Dialogue` (rules: `Dialogue.from_turns`).

    System, human and AI messages map to the system, user and assistant roles; an AI
    message's `onegen_retrievals` (from `additional_kwargs`, else `response_metadata`) goes
    with its turn. Raises `ValueError` when the last message is not from the user,
    `NotImplementedError` for tool calls, tool results and non-text content, which OneGen
    models do not handle.
    """
    return Dialogue.from_turns(
        (Turn(_role(m), m.text, retrievals_of(m)) for m in messages),
        user_message="a human message",
        append="HumanMessage(...)",
    )


def retrievals_of(message: BaseMessage) -> Any:
    """The `onegen_retrievals` an AI message carries, or None when its retrievals are unknown."""
    for metadata in (message.additional_kwargs, message.response_metadata):
        if RETRIEVALS_KEY in metadata:
            return metadata[RETRIEVALS_KEY]
    return None


def _role(message: BaseMessage) -> Role:
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
