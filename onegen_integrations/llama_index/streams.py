"""Turning the engine's event stream into what LlamaIndex iterates."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse

from onegen_integrations.events import DoneEvent, Event, TokenEvent
from onegen_integrations.llama_index.tool_calls import assistant_message, offered_message
from onegen_integrations.replay import RETRIEVALS_KEY, retrievals_to_json
from onegen_integrations.tools import CallStream, ToolCall, ToolOffer

T = TypeVar("T")
_END = object()


def chat_responses(events: Iterator[Event], offer: ToolOffer | None = None) -> Iterator[ChatResponse]:
    """A turn as streamed LlamaIndex chat responses (assistant text so far, and its delta).

    The last response has an empty delta and carries the finished answer: its message holds
    the retrievals (`answer_message`) and `raw` the turn's metadata (usage included), as the
    last chunk of a LlamaIndex LLM stream does for memory writers and token counters. With
    tools offered, no call text reaches a delta: each call joins the message as a
    `ToolCallBlock` (in a response with an empty delta) once its block closes.
    """
    text, calls = "", []
    splitter = CallStream() if offer else None
    for event in events:
        if isinstance(event, TokenEvent):
            for piece in splitter.feed(event.text) if splitter else [event.text]:
                if isinstance(piece, str):
                    text += piece
                    yield ChatResponse(message=assistant_message(text, calls), delta=piece)
                elif isinstance(piece, ToolCall) and offer and offer.keeps(calls):
                    calls.append(piece)
                    yield ChatResponse(message=assistant_message(text, calls), delta="")
        elif isinstance(event, DoneEvent):
            answer = answer_message(event, offer, calls)
            content = answer.content or ""
            if len(content) > len(text) and content.startswith(text):  # held back: it might have opened a call
                yield ChatResponse(message=assistant_message(content, calls), delta=content[len(text) :])
            yield ChatResponse(message=answer, delta="", raw=turn_metadata(event))


def completion_responses(events: Iterator[Event]) -> Iterator[CompletionResponse]:
    """A turn as streamed completion responses; the last, with an empty delta, carries the
    turn's metadata in `raw`."""
    text = ""
    for event in events:
        if isinstance(event, TokenEvent):
            text += event.text
            yield CompletionResponse(text=text, delta=event.text)
        elif isinstance(event, DoneEvent):
            yield CompletionResponse(text=event.text, delta="", raw=turn_metadata(event))


def run_to_end(events: Iterator[Event]) -> DoneEvent:
    """Run a turn to its end and return its `DoneEvent`."""
    *_, done = events
    assert isinstance(done, DoneEvent)
    return done


def turn_metadata(done: DoneEvent) -> dict[str, Any]:
    """What a LlamaIndex response's `metadata` (and an LLM response's `raw`) reports about a
    turn, as plain JSON: why it ended, its token usage, and its retrievals under `RETRIEVALS_KEY`."""
    return {
        "finish_reason": done.finish_reason,
        "usage": dataclasses.asdict(done.usage),
        RETRIEVALS_KEY: retrievals_to_json(done.retrievals),
    }


def answer_message(
    done: DoneEvent, offer: ToolOffer | None = None, streamed: list[ToolCall] | None = None
) -> ChatMessage:
    """The turn's answer as an assistant message that carries its retrievals, so a session
    rebuilt from a message history holds what the live one held; with tools offered, its
    calls are `ToolCallBlock`s after its text (`tool_calls.offered_message`; `streamed` keeps the ids
    a stream gave its calls)."""
    additional_kwargs = {RETRIEVALS_KEY: retrievals_to_json(done.retrievals)}
    if offer is None:
        return assistant_message(done.text, (), additional_kwargs)
    return offered_message(offer, done.text, additional_kwargs, streamed)


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
