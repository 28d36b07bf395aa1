"""Retrieval frequency (G→R, as in entity linking): output time against retrievals per output.

The model writes `new_tokens` answer tokens and retrieves every `new_tokens // (r + 1)`
tokens, `r` times. OneGen forces `[RQ]` there (insertion `con`: one `<CON>` token is fed
back, no passage); the pipelines generate the same tokens and, at the same points, encode
the text so far with a separate encoder (MiniLM) or with the same LLM again (GRIT-style).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from onegen_evaluation.minilm import MiniLMEncoder

from benchmarks.timing import interleaved_medians, ratio
from benchmarks.workload import QUESTION, FixedRetriever, no_eos
from onegen_integrations.model import OneGenModel

SYSTEMS = ("one_pass", "pipeline_minilm", "grit_second_pass")


class QueryEvery:
    """Forces `[RQ]` after every `every` answer tokens, `count` times; bans EOS and other `[RQ]`s."""

    def __init__(self, model: OneGenModel, every: int, count: int) -> None:
        self.query, self.eos = model.query_token_id, model.tokenizer.eos_token_id
        self.every, self.count = every, count

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        logits[self.eos] = float("-inf")
        asked = [i for i, token in enumerate(generated) if token == self.query]
        since = len(generated) - (asked[-1] + 1 if asked else 0)
        if len(asked) < self.count and since >= self.every:
            forced = torch.full_like(logits, float("-inf"))
            forced[self.query] = 0.0
            return forced
        logits[self.query] = float("-inf")
        return logits


class EncodeEvery:
    """Bans EOS and, after every `every` generated tokens (`count` times), encodes the text so far."""

    def __init__(
        self, model: OneGenModel, encode: Callable[[str], np.ndarray], prompt: str, every: int, count: int
    ) -> None:
        self.model, self.encode, self.prompt = model, encode, prompt
        self.every, self.count, self.done = every, count, 0
        self.ban = no_eos(model)

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if generated and len(generated) % self.every == 0 and self.done < self.count:
            self.encode(f"{self.prompt}\n{self.model.tokenizer.decode(list(generated))}")
            self.done += 1
        return self.ban(generated, logits)


def output_variants(
    model: OneGenModel, encoder: MiniLMEncoder, retrievals: int, new_tokens: int
) -> dict[str, Callable[[], object]]:
    """One callable per system writing one output with `retrievals` retrievals in it."""
    every = max(1, new_tokens // (retrievals + 1))
    retriever = FixedRetriever("unused: insertion is <CON>")

    def one_pass() -> None:
        session = model.session(
            retriever,
            retrieval="auto",
            insertion="con",
            max_retrievals=retrievals,
            logits_processor=QueryEvery(model, every, retrievals),
        )
        session.ask(QUESTION, max_new_tokens=new_tokens + retrievals)

    def pipeline(encode: Callable[[str], np.ndarray]) -> Callable[[], object]:
        def run() -> None:
            processor = EncodeEvery(model, encode, QUESTION, every, retrievals)
            model.session(None, logits_processor=processor).ask(QUESTION, max_new_tokens=new_tokens)

        return run

    return {
        "one_pass": one_pass,
        "pipeline_minilm": pipeline(lambda text: encoder.encode([text])),
        "grit_second_pass": pipeline(model.embed_query),
    }


def measure_frequency(
    model: OneGenModel, encoder: MiniLMEncoder, *, retrievals: Sequence[int], new_tokens: int, repeats: int
) -> dict[str, Any]:
    """Median output seconds per system and retrieval count, and each pipeline's ratio to one-pass."""
    seconds: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for count in retrievals:
        medians = interleaved_medians(output_variants(model, encoder, count, new_tokens), repeats)
        for name in SYSTEMS:
            seconds[name].append(round(medians[name], 4))
    return {
        "retrievals": list(retrievals),
        "new_tokens": new_tokens,
        "output_seconds": seconds,
        "ratio_to_one_pass": {
            name: [ratio(t, o) for t, o in zip(seconds[name], seconds["one_pass"])] for name in SYSTEMS[1:]
        },
        "seconds_per_retrieval": {
            name: round((seconds[name][-1] - seconds[name][0]) / max(1, retrievals[-1] - retrievals[0]), 4)
            for name in SYSTEMS
        },
    }
