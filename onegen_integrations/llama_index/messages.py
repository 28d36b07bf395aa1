"""LlamaIndex `ChatMessage` lists as an engine `Dialogue`: each message's role mapped to a turn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock

from onegen_integrations.dialogue import Dialogue, Role, Turn
from onegen_integrations.llama_index.tool_calls import message_calls
from onegen_integrations.replay import RETRIEVALS_KEY
from onegen_integrations.tools import calls_text, result_text

_SYSTEM_ROLES = {MessageRole.SYSTEM, MessageRole.DEVELOPER}
_ASSISTANT_ROLES = {MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL}
_RESULT_ROLES = {MessageRole.TOOL, MessageRole.FUNCTION}


def to_dialogue(messages: Sequence[ChatMessage]) -> Dialogue:
    """Split a message list whose last message is the user's or a tool result (rules: `Dialogue.from_turns`).

    System and developer messages become the system prompt; assistant, chatbot and model
    messages are answers, whose retrievals ride in `additional_kwargs[RETRIEVALS_KEY]` and whose
    `ToolCallBlock`s are written after their text as the model writes calls; a tool (or function)
    result is a user turn holding it as a `<tool_response>` named for its tool (its
    `additional_kwargs` "name", or that of the call its "tool_call_id" answers), and results in a
    row share one turn; every other role counts as user text.

    Example:
        dialogue = to_dialogue([ChatMessage(role="user", content="Hi")])
        answer = dialogue.open(model, retrieval="never").ask(dialogue.message).text
    """
    names = {b.tool_call_id: b.tool_name for m in messages for b in m.blocks if isinstance(b, ToolCallBlock)}
    return Dialogue.from_turns(
        (Turn(_role(m), _text(m, names), m.additional_kwargs.get(RETRIEVALS_KEY)) for m in messages),
        user_message="a user or tool message",
        append="ChatMessage(role='user', content=...)",
    )


def _role(message: ChatMessage) -> Role:
    if message.role in _SYSTEM_ROLES:
        return "system"
    return "assistant" if message.role in _ASSISTANT_ROLES else "user"


def _text(message: ChatMessage, names: Mapping[str | None, str]) -> str:
    content = message.content or ""
    if message.role in _RESULT_ROLES:
        extra = message.additional_kwargs
        return result_text(content, extra.get("name") or names.get(extra.get("tool_call_id")))
    return calls_text(content, message_calls(message))
