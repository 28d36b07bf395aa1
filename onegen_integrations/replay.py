"""What an answer retrieved, as JSON a framework message can carry, so a session rebuilt from
messages holds the tokens the live session held.

A live answer is `text before [RQ]`, `[RQ]`, the inserted passages, `the rest of the text`.
The message history a framework keeps holds only the text; without the `[RQ]` and passages the
model sees a dialogue in which nobody retrieved, and stops retrieving on follow-ups. Adapters
store `retrievals_to_json(done.retrievals)` in the answer's message metadata under
`RETRIEVALS_KEY`; `OneGenSession.load_history` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onegen_integrations.chat_format import Message
from onegen_integrations.events import RetrievalEvent
from onegen_integrations.retrieval import Hit

RETRIEVALS_KEY = "onegen_retrievals"
"""The metadata key (LangChain `additional_kwargs`/`response_metadata`, LlamaIndex
`additional_kwargs`, a message dict) holding an answer's retrievals."""


class ReplayFormatError(ValueError):
    """A message's `onegen_retrievals` value is not what `retrievals_to_json` writes."""


@dataclass(frozen=True)
class PastRetrieval:
    """One retrieval of an earlier answer: where `[RQ]` stood and what was inserted after it."""

    offset: int
    """Characters of the answer text before `[RQ]`."""
    hits: list[Hit]
    """The documents inserted, in order."""


def retrievals_to_json(retrievals: Sequence[RetrievalEvent | PastRetrieval]) -> list[dict[str, Any]]:
    """An answer's retrievals (live events, or restored ones) as plain JSON: offset, and each
    hit's id, text and score."""
    return [
        {"offset": r.offset, "hits": [{"id": h.id, "text": h.text, "score": h.score} for h in r.hits]}
        for r in retrievals
    ]


def retrievals_from_json(value: Any) -> list[PastRetrieval]:
    """Read what `retrievals_to_json` wrote; `ReplayFormatError` says what is wrong otherwise."""
    if not isinstance(value, list):
        raise ReplayFormatError(f"{RETRIEVALS_KEY} must be a list of retrievals, not {type(value).__name__}")
    past = []
    for i, item in enumerate(value):
        offset = item.get("offset") if isinstance(item, dict) else None
        hits = item.get("hits") if isinstance(item, dict) else None
        if not isinstance(offset, int) or offset < 0 or not isinstance(hits, list):
            raise ReplayFormatError(f'{RETRIEVALS_KEY}[{i}] needs "offset" (characters before [RQ]) and "hits"')
        try:
            past.append(PastRetrieval(offset, [Hit(str(h["id"]), str(h["text"]), float(h.get("score", 0.0))) for h in hits]))
        except (TypeError, KeyError, ValueError) as error:
            raise ReplayFormatError(f'{RETRIEVALS_KEY}[{i}]: each hit needs "id" and "text" ({error})') from error
    return sorted(past, key=lambda r: r.offset)


def join_messages(first: Message, second: Message, separator: str = "\n\n") -> Message:
    """Two consecutive messages of one role as one, `separator` between their texts.

    Retrievals stay with their text: the second's offsets move past the first's. If only one
    part records its retrievals, the joined message's are unknown (replay decides again).
    """
    joined: Message = {"role": first["role"], "content": first["content"] + separator + second["content"]}
    if RETRIEVALS_KEY in first and RETRIEVALS_KEY in second:
        shift = len(first["content"]) + len(separator)
        moved = [{**r, "offset": r["offset"] + shift} for r in retrievals_to_json(retrievals_from_json(second[RETRIEVALS_KEY]))]
        joined[RETRIEVALS_KEY] = [*first[RETRIEVALS_KEY], *moved]
    return joined
