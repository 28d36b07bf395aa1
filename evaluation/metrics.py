"""Retrieval Recall@k, SQuAD-style answer exact match and F1, and the sign test for paired results."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from math import comb

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (as SQuAD's script)."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(a) for a in answers))


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """Best token-overlap F1 of the prediction against the gold answers."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if not predicted or not gold:
            best = max(best, float(predicted == gold))
        elif common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def recall_at_k(ranked_ids: Sequence[str], gold_ids: Sequence[str], k: int) -> float:
    """1.0 when any gold id is among the first `k` ranked ids (0.0 for an empty ranking)."""
    return float(any(doc_id in gold_ids for doc_id in ranked_ids[:k]))


def sign_test(won: int, lost: int) -> float:
    """Two-sided sign-test p-value of `won` against `lost` paired outcomes (ties left out): the
    chance of a split at least this uneven if either side were equally likely to win a case."""
    cases = won + lost
    tail = sum(comb(cases, k) for k in range(min(won, lost) + 1)) / 2**cases
    return min(1.0, 2 * tail)
