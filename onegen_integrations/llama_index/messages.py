"""LlamaIndex `ChatMessage` lists as an engine `Dialogue`: each message's role mapped to a turn."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from onegen_integrations.dialogue import Dialogue, Role, Turn
from onegen_integrations.replay import RETRIEVALS_KEY

_SYSTEM_ROLES = {MessageRole.SYSTEM, MessageRole.DEVELOPER}
_ASSISTANT_ROLES = {MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL}


def to_dialogue(messages: Sequence[ChatMessage]) -> Dialogue:
    """Split a message list whose last message is the user's (rules: `Dialogue.from_turns`).

    System and developer messages become the system prompt; assistant, chatbot and model
    messages are answers, whose retrievals ride in `additional_kwargs[RETRIEVALS_KEY]`; tool
    and function results and every other role count as user text.

    Example:
        dialogue = to_dialogue([ChatMessage(role="user", content="Hi")])
        answer = dialogue.open(model, retrieval="never").ask(dialogue.message).text
    """
    return Dialogue.from_turns(
        (Turn(_role(m), m.content or "", m.additional_kwargs.get(RETRIEVALS_KEY)) for m in messages),
        append="ChatMessage(role='user', content=...)",
    )


def _role(message: ChatMessage) -> Role:
    if message.role in _SYSTEM_ROLES:
        return "system"
    return "assistant" if message.role in _ASSISTANT_ROLES else "user"
