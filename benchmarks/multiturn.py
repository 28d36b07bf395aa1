"""Multi-turn chat: seconds per turn for turns 1..n, OneGen's one cache against condense-then-retrieve peers."""

from __future__ import annotations

import statistics
from typing import Any

from onegen_evaluation.minilm import MiniLMEncoder

from benchmarks.chat_systems import ChatFactory, langchain_chat, llama_index_chat, onegen_chat
from benchmarks.timing import ratio, timed
from benchmarks.workload import conversation, cut_to_tokens
from onegen_integrations.ingest import demo_documents
from onegen_integrations.model import OneGenModel


def turn_seconds(new_conversation: ChatFactory, messages: list[str], repeats: int) -> list[float]:
    """Median seconds of each turn over `repeats` fresh conversations, after a 2-turn warm-up one."""
    warm = new_conversation()
    for message in messages[:2]:
        warm(message)
    runs = []
    for _ in range(max(1, repeats)):
        chat = new_conversation()
        runs.append([timed(lambda m=message, c=chat: c(m)) for message in messages])
    return [round(statistics.median(turn), 4) for turn in zip(*runs)]


def measure_multiturn(
    model: OneGenModel, encoder: MiniLMEncoder, *, turns: int, new_tokens: int, doc_tokens: int, repeats: int
) -> dict[str, Any]:
    """Per-turn seconds of each chat system over one `turns`-message conversation on the demo corpus."""
    texts = [cut_to_tokens(model, doc.text, doc_tokens) for doc in demo_documents()]
    messages = conversation(turns)
    systems = {
        "onegen": onegen_chat(model, texts, new_tokens),
        "llama_index_condense_plus_context": llama_index_chat(model, encoder, texts, new_tokens),
        "langchain_history_aware": langchain_chat(model, encoder, texts, new_tokens),
    }
    seconds = {name: turn_seconds(factory, messages, repeats) for name, factory in systems.items()}
    totals = {name: round(sum(t), 3) for name, t in seconds.items()}
    peers = [name for name in systems if name != "onegen"]
    return {
        "turns": len(messages),
        "new_tokens": new_tokens,
        "passage_tokens": doc_tokens,
        "turn_seconds": seconds,
        "total_seconds": totals,
        "total_ratio_to_onegen": {name: ratio(totals[name], totals["onegen"]) for name in peers},
        "last_turn_ratio_to_onegen": {name: ratio(seconds[name][-1], seconds["onegen"][-1]) for name in peers},
    }
