"""Retrieval overhead per turn: one-pass `[RQ]` against the ways users get a query vector otherwise.

For each query length, four variants answer the same message with the same passage and
generate the same number of tokens:

- `lower_bound`: the passage already in the prompt, no retrieval at all;
- `one_pass`: OneGen, the model emits `[RQ]` and its hidden state is the query vector;
- `pipeline_minilm`: a separate MiniLM encoder embeds the query, then the LLM turn with the passage;
- `grit_second_pass`: the same LLM re-encodes the query text (`model.embed_query`), then the turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from onegen_evaluation.minilm import MiniLMEncoder

from benchmarks.timing import interleaved_medians, ratio
from benchmarks.workload import FixedRetriever, corpus_texts, no_eos, query_of_length
from onegen_integrations.model import OneGenModel

VARIANTS = ("lower_bound", "one_pass", "pipeline_minilm", "grit_second_pass")


def turn_variants(
    model: OneGenModel, encoder: MiniLMEncoder, query: str, passage: str, new_tokens: int
) -> dict[str, Callable[[], object]]:
    """One callable per variant, each answering `query` once with `passage` in context."""
    ban = no_eos(model)
    retriever = FixedRetriever(passage)

    def answer_with_passage() -> None:
        model.session(None, logits_processor=ban).ask(f"{passage}\n{query}", max_new_tokens=new_tokens)

    def one_pass() -> None:
        session = model.session(retriever, retrieval="always", logits_processor=ban)
        session.ask(query, max_new_tokens=new_tokens)

    def pipeline_minilm() -> None:
        encoder.encode([query])
        answer_with_passage()

    def grit_second_pass() -> None:
        model.embed_query(query)
        answer_with_passage()

    return {
        "lower_bound": answer_with_passage,
        "one_pass": one_pass,
        "pipeline_minilm": pipeline_minilm,
        "grit_second_pass": grit_second_pass,
    }


def measure_overhead(
    model: OneGenModel,
    encoder: MiniLMEncoder,
    *,
    query_tokens: Sequence[int],
    passage_tokens: int,
    new_tokens: int,
    repeats: int,
) -> dict[str, Any]:
    """Median turn seconds per variant and query length, and each variant's cost over the lower bound."""
    passage = corpus_texts(model, passage_tokens, 1)[0]
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for length in query_tokens:
        medians = interleaved_medians(
            turn_variants(model, encoder, query_of_length(model, length), passage, new_tokens), repeats
        )
        for name in VARIANTS:
            seconds[name].append(round(medians[name], 4))
    base = seconds["lower_bound"]
    return {
        "query_tokens": list(query_tokens),
        "passage_tokens": model.count_tokens(passage),
        "new_tokens": new_tokens,
        "turn_seconds": seconds,
        "overhead_ms": {name: [round(1000 * (t - b), 1) for t, b in zip(seconds[name], base)] for name in VARIANTS[1:]},
        "ratio_to_lower_bound": {name: [ratio(t, b) for t, b in zip(seconds[name], base)] for name in VARIANTS[1:]},
    }
