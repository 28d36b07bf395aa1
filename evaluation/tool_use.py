"""Run the held-out tool-use cases (`tool_cases`) through a model and score its first answer.

Each case is a fresh session: the model's system prompt with the case's tools
(`tools_prompt`), a retriever over `tool_cases.DOCS` embedded by the model itself, one passage
per `[RQ]`, greedy decoding. Only the first answer is scored: it is where the model decides
whether to call, what, with which arguments, and whether to retrieve first. No tool is run.

Per case (`score_answer`), over the cases where each applies:
- tool choice: a `call` or `both` case's first call names the expected tool; a `document` or
  `neither` case has no call at all;
- arguments: the first call names the expected tool and its arguments equal the expected ones
  (`same_value`); `call` and `both` cases;
- false call: any call, valid or not, in a `document` or `neither` case;
- invalid call: a `<tool_call>` block that is not a call (bad JSON, no name, cut off); it counts
  as a call everywhere else, never as a right one;
- retrieved: the answer emitted `[RQ]`; Recall@1: the first retrieval's best hit is the gold
  document (`document` and `both` cases). On `neither` cases, retrieved is needless retrieval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from onegen_evaluation.metrics import recall_at_k
from onegen_evaluation.runner import RankingRetriever
from onegen_evaluation.tool_cases import KINDS, ToolCase

from onegen_integrations.model import OneGenModel
from onegen_integrations.tools import InvalidToolCall, ToolCall, parse_answer, tools_prompt

TOOL_SYSTEMS = ("onegen", "base")
"""The trained model, and the untrained base given the same prompt as a reference."""
_METRICS = ("tool_choice", "arguments", "false_call", "invalid_call", "retrieved", "recall_at_1")


@dataclass
class ToolScores:
    """Averages over cases; a metric is None where no case it applies to was run."""

    cases: int = 0
    tool_choice: float | None = None
    arguments: float | None = None
    false_call: float | None = None
    invalid_call: float | None = None
    retrieved: float | None = None
    recall_at_1: float | None = None


@dataclass
class ToolUseResult:
    """One system's scores over all cases and per kind, and every case's record."""

    name: str
    description: str
    overall: ToolScores
    kinds: dict[str, ToolScores]
    seconds: float
    examples: list[dict] = field(default_factory=list)


def same_value(got: Any, expected: Any) -> bool:
    """Whether an argument equals the expected one: numbers by value (an int equals the same
    float, a string never equals a number), strings case-sensitively after stripping, lists
    and objects member by member with the same keys."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, int | float):
        return isinstance(got, int | float) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str):
        return isinstance(got, str) and got.strip() == expected.strip()
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(same_value, got, expected))
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(same_value(got[k], v) for k, v in expected.items())
    return got == expected


def score_answer(case: ToolCase, answer: str, ranking: Sequence[str]) -> dict[str, Any]:
    """The record of one answer: what it called and retrieved, and each metric that applies
    to the case's kind (None where it does not). `ranking` is the document ids the answer's
    first retrieval returned, best first (empty when it did not retrieve)."""
    _, calls = parse_answer(answer)
    expected = dict(case.arguments or {})
    right = calls[0] if calls and isinstance(calls[0], ToolCall) and calls[0].name == case.tool else None
    wants_call = case.tool is not None
    return {
        "case": case.id, "kind": case.kind, "request": case.request, "tools": [t.name for t in case.tools],
        "expected": {"name": case.tool, "arguments": expected} if wants_call else None,
        "gold": case.gold, "answer": answer, "calls": [_call_json(c) for c in calls], "ranking": list(ranking),
        "tool_choice": float(right is not None if wants_call else not calls),
        "arguments": float(right is not None and same_value(right.arguments, expected)) if wants_call else None,
        "false_call": None if wants_call else float(bool(calls)),
        "invalid_call": float(any(isinstance(c, InvalidToolCall) for c in calls)),
        "retrieved": float(bool(ranking)),
        "recall_at_1": recall_at_k(ranking, [case.gold], 1) if case.gold else None,
    }


def _call_json(call: ToolCall | InvalidToolCall) -> dict[str, Any]:
    if isinstance(call, InvalidToolCall):
        return {"invalid": call.text, "error": call.error}
    return {"name": call.name, "arguments": call.arguments}


def average(records: Sequence[dict[str, Any]]) -> ToolScores:
    """Each metric's mean over the records it applies to."""
    means = {}
    for metric in _METRICS:
        values = [r[metric] for r in records if r[metric] is not None]
        means[metric] = sum(values) / len(values) if values else None
    return ToolScores(cases=len(records), **means)


def run_tool_cases(
    model: OneGenModel,
    cases: Sequence[ToolCase],
    docs: dict[str, str],
    *,
    name: str,
    description: str = "",
    max_new_tokens: int = 96,
    max_passage_tokens: int = 192,
) -> ToolUseResult:
    """Ask each case in a fresh session of `model` (retrieval `auto`, k=1, greedy) and score it."""
    started = time.perf_counter()
    ids = list(docs)
    texts = [docs[i] for i in ids]
    retriever = RankingRetriever(ids, texts, model.embed_documents(texts, batch_size=8))
    records = []
    for case in cases:
        session = model.session(
            retriever, system_prompt=tools_prompt(model.config.system_prompt, case.tools), retrieval="auto",
            k=1, max_new_tokens=max_new_tokens, max_passage_tokens=max_passage_tokens,
        )
        done = session.ask(case.request)
        ranking = [hit.id for hit in done.retrievals[0].hits] if done.retrievals else []
        records.append(score_answer(case, done.text, ranking))
    return ToolUseResult(
        name=name,
        description=description,
        overall=average(records),
        kinds={kind: average([r for r in records if r["kind"] == kind]) for kind in KINDS},
        seconds=time.perf_counter() - started,
        examples=records,
    )


def format_tool_table(results: Sequence[ToolUseResult]) -> str:
    """A Markdown table, % in points: tool choice over all cases; exact arguments on `call` and
    `both` cases; false calls on `document` and `neither` cases; invalid calls over all;
    `[RQ]` and Recall@1 on `document` and `both` cases; needless `[RQ]` on `neither` cases."""
    lines = [
        "| system | tool choice | call: right tool | call: exact args | both: right tool | both: exact args "
        "| false calls | invalid calls | [RQ] on documents | R@1 | needless [RQ] | cases | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        k = r.kinds
        no_call = average([e for e in r.examples if e["kind"] in ("document", "neither")])
        documents = average([e for e in r.examples if e["kind"] in ("document", "both")])
        cells = [r.overall.tool_choice, k["call"].tool_choice, k["call"].arguments, k["both"].tool_choice,
                 k["both"].arguments, no_call.false_call, r.overall.invalid_call, documents.retrieved,
                 documents.recall_at_1, k["neither"].retrieved]
        shown = ["-" if c is None else f"{100 * c:.1f}" for c in cells]
        lines.append(f"| {r.name} | " + " | ".join(shown) + f" | {r.overall.cases} | {r.seconds:.0f} |")
    return "\n".join(lines)


def tool_results_from_json(results: dict[str, dict]) -> list[ToolUseResult]:
    """Results saved with `dataclasses.asdict`, back as `ToolUseResult`s in `TOOL_SYSTEMS` order."""
    table = []
    for name in [n for n in TOOL_SYSTEMS if n in results]:
        row = dict(results[name])
        kinds = {kind: ToolScores(**scores) for kind, scores in row.pop("kinds").items()}
        table.append(ToolUseResult(**{**row, "overall": ToolScores(**row["overall"]), "kinds": kinds}))
    return table
