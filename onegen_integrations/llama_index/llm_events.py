"""A one-pass turn reported to LlamaIndex as an LLM call, so its observers see it.

The query and chat engines generate without calling an LLM object, yet the turn is the
model's call: callback handlers (`TokenCountingHandler`, tracing integrations) and
instrumentation event handlers expect the `LLM` start and end that `llm_chat_callback` sends
for an LLM's `chat`. `reported_as_llm_call` sends the same around the engine's events; the
end response's `raw` holds the turn's usage, which `TokenCountingHandler` reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import llama_index.core.instrumentation as instrument
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent
from llama_index.core.instrumentation.span import active_span_id

from onegen_integrations.chat_format import Message
from onegen_integrations.events import DoneEvent, Event
from onegen_integrations.llama_index.streams import answer_message, turn_metadata
from onegen_integrations.replay import RETRIEVALS_KEY

dispatcher = instrument.get_dispatcher(__name__)


def reported_as_llm_call(
    events: Iterator[Event],
    messages: Sequence[ChatMessage],
    callback_manager: CallbackManager,
    model_dict: dict[str, Any],
) -> Iterator[Event]:
    """`events`, with an `LLM` callback event and `LLMChatStart/EndEvent` around them.

    The span is the caller's, taken now (a stream is read after the call that made it has
    returned). The start is sent when the turn starts running; the end carries the answer
    (`answer_message`) and `raw=turn_metadata(done)`; a turn that fails or is abandoned ends
    with the exception, as LlamaIndex's own LLM wrappers end it.
    """
    return _reported(events, list(messages), callback_manager, model_dict, active_span_id.get())


def _reported(
    events: Iterator[Event],
    messages: list[ChatMessage],
    callback_manager: CallbackManager,
    model_dict: dict[str, Any],
    span_id: str | None,
) -> Iterator[Event]:
    dispatcher.event(LLMChatStartEvent(model_dict=model_dict, messages=messages, additional_kwargs={}, span_id=span_id))
    event_id = callback_manager.on_event_start(
        CBEventType.LLM,
        payload={
            EventPayload.MESSAGES: messages,
            EventPayload.ADDITIONAL_KWARGS: {},
            EventPayload.SERIALIZED: model_dict,
        },
    )
    ended = False
    try:
        for event in events:
            if isinstance(event, DoneEvent):
                ended = True
                response = ChatResponse(message=answer_message(event), raw=turn_metadata(event))
                callback_manager.on_event_end(
                    CBEventType.LLM,
                    payload={EventPayload.MESSAGES: messages, EventPayload.RESPONSE: response},
                    event_id=event_id,
                )
                dispatcher.event(LLMChatEndEvent(messages=messages, response=response, span_id=span_id))
            yield event
    except BaseException as error:
        if ended:  # the reader stopped after the end: nothing failed
            raise
        callback_manager.on_event_end(CBEventType.LLM, payload={EventPayload.EXCEPTION: error}, event_id=event_id)
        dispatcher.event(ExceptionEvent(exception=error, span_id=span_id))
        raise
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # an abandoned turn releases its session now, not when collected


def model_dict(owner: object, model_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """What the events report as the model: who ran the turn, the model, the plain options."""
    plain = {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}
    return {"class_name": type(owner).__name__, "model_name": model_name, **plain}


def prompt_messages(system_prompt: str, history: Sequence[Message], message: str) -> list[ChatMessage]:
    """The messages a turn answers, as LlamaIndex reports an LLM's input: the system prompt,
    the history (answers with their retrievals), and the user's message."""
    out = [ChatMessage(role=MessageRole.SYSTEM, content=system_prompt)] if system_prompt else []
    for m in history:
        extra = {RETRIEVALS_KEY: m[RETRIEVALS_KEY]} if RETRIEVALS_KEY in m else {}
        out.append(ChatMessage(role=MessageRole(m["role"]), content=m["content"], additional_kwargs=extra))
    out.append(ChatMessage(role=MessageRole.USER, content=message))
    return out
