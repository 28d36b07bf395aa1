"""Turning the engine's event stream into what LlamaIndex iterates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole

from onegen_integrations.events import DoneEvent, Event, TokenEvent

T = TypeVar("T")
_END = object()


def text_deltas(events: Iterator[Event]) -> Iterator[tuple[str, str]]:
    """(answer so far, new text) for each token event of a turn."""
    text = ""
    for event in events:
        if isinstance(event, TokenEvent):
            text += event.text
            yield text, event.text


def chat_responses(events: Iterator[Event]) -> Iterator[ChatResponse]:
    """A turn as streamed LlamaIndex chat responses (assistant text so far, and its delta)."""
    for text, delta in text_deltas(events):
        yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)


def run_to_end(events: Iterator[Event]) -> DoneEvent:
    """Run a turn to its end and return its `DoneEvent`."""
    *_, done = events
    assert isinstance(done, DoneEvent)
    return done


def turn_metadata(done: DoneEvent) -> dict[str, Any]:
    """What a LlamaIndex response's `metadata` reports about a turn."""
    return {"finish_reason": done.finish_reason, "usage": done.usage, "retrievals": done.retrievals}


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """Yield from a blocking iterator, running each step in a worker thread.

    The event loop stays free while the model computes the next token. Closing the async
    iterator early closes `items` too, so an abandoned turn releases its session.
    """
    try:
        while True:
            item = await asyncio.to_thread(next, items, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
