"""What every benchmark feeds the systems: demo-corpus texts, questions, and a fixed passage.

Retrieval here always returns the same passage (`FixedRetriever`), so the systems compared
feed identical tokens to the LLM and the timings isolate what differs between them: how the
query vector is made. The vector search itself (microseconds over a few dozen vectors) is
left out everywhere except in the multi-turn chat, where each framework uses its own store.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from onegen_integrations.ingest import demo_documents
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Hit, RetrievalQuery
from onegen_integrations.session import LogitsProcessor

QUESTION = "Who founded the Varenne Institute, and when?"
FOLLOW_UPS = ("Where was she born?", "What river runs through that town?", "When did it open?")


def cut_to_tokens(model: OneGenModel, text: str, tokens: int) -> str:
    """`text` cut to about its first `tokens` tokens."""
    return model.tokenizer.decode(model.tokenize(text)[:tokens])


def corpus_texts(model: OneGenModel, tokens: int, count: int) -> list[str]:
    """Demo-corpus documents cut to about `tokens` tokens, repeated (numbered) up to `count`."""
    texts = [cut_to_tokens(model, doc.text, tokens) for doc in demo_documents()]
    return [f"{texts[i % len(texts)]} ({i})" for i in range(count)]


def query_of_length(model: OneGenModel, tokens: int) -> str:
    """A user message of about `tokens` tokens: demo-corpus notes, then `QUESTION`."""
    notes = " ".join(doc.text for doc in demo_documents())
    room = max(0, tokens - model.count_tokens(f"Notes: \nQuestion: {QUESTION}"))
    return f"Notes: {cut_to_tokens(model, notes, room)}\nQuestion: {QUESTION}" if room else QUESTION


def conversation(turns: int) -> list[str]:
    """`turns` user messages: questions about demo-corpus titles, each with a pronoun follow-up."""
    messages: list[str] = []
    for i, doc in enumerate(demo_documents()):
        messages += [f"What is {doc.metadata['title']}?", FOLLOW_UPS[i % len(FOLLOW_UPS)]]
    return messages[:turns]


class FixedRetriever:
    """The engine's `Retriever` that always returns one passage (no search cost)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        """The fixed passage, whatever the query."""
        return [Hit(id="passage", text=self.text, score=1.0)]


def no_eos(model: OneGenModel) -> LogitsProcessor:
    """A logits processor banning end-of-sequence, so every run generates the requested tokens."""
    eos = model.tokenizer.eos_token_id

    def processor(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        logits[eos] = float("-inf")
        return logits

    return processor
