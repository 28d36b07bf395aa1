"""The events a session streams for one turn: tokens, retrievals, and the end of the turn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from onegen_integrations.retrieval import Hit, RetrievalQuery

FinishReason = Literal["eos", "stop", "length", "context"]


@dataclass(frozen=True)
class TokenEvent:
    """New answer text (may hold several tokens, or part of one multi-byte character)."""

    text: str


@dataclass(frozen=True)
class RetrievalEvent:
    """The model emitted `[RQ]`; `hits` were found and `inserted_tokens` fed after it."""

    query: RetrievalQuery
    hits: list[Hit]
    inserted_tokens: int
    seconds: float
    offset: int = 0
    """Characters of the answer text before this `[RQ]` (where a replay inserts it again)."""


@dataclass(frozen=True)
class Usage:
    """Token counts and time of one turn.

    `prompt_tokens` are the new tokens of the user message (the history is already cached and
    counted in `cached_tokens`); `inserted_tokens` are retrieved passages fed into the cache;
    `rebuilt_tokens` are tokens re-fed when old turns were dropped to make room;
    `processed_tokens` counts every token this turn passed through the model (the last
    sampled token is fed with the next message, so it counts there).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    inserted_tokens: int = 0
    cached_tokens: int = 0
    rebuilt_tokens: int = 0
    processed_tokens: int = 0
    retrievals: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class DoneEvent:
    """The turn ended: the whole answer text, why it ended, its retrievals and usage."""

    text: str
    finish_reason: FinishReason
    retrievals: list[RetrievalEvent] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


Event = TokenEvent | RetrievalEvent | DoneEvent
