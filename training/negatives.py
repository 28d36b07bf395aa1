"""Hard negatives: documents that look relevant but are not.

Two miners. `by_overlap` ranks candidates (the other paragraphs of the same article, in the
converters) by how many content words they share with the question: cheap, needs no model,
and is what the converters write. `by_model` re-mines with a model's own retrieval: the
top-ranked documents that are not positives become the negatives (run it with a trained
model to sharpen a second round of training).
"""

from __future__ import annotations

import re

import torch

_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "in", "is", "it", "its", "of", "on", "or", "she", "that", "the", "their", "them", "they", "this", "to", "was", "were", "what", "when", "where", "which", "who", "whom", "whose", "why", "with"]
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of `text` without common function words."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def by_overlap(query: str, candidate_words: dict[str, set[str]], k: int) -> list[str]:
    """Ids of the `k` candidates sharing the most content words with `query` (ties: id order).

    `candidate_words` maps each candidate id to its `content_words` (computed once per corpus).
    """
    words = content_words(query)
    return sorted(candidate_words, key=lambda doc_id: (-len(words & candidate_words[doc_id]), doc_id))[:k]


def by_model(queries: torch.Tensor, positives: list[list[int]], documents: torch.Tensor, k: int) -> list[list[int]]:
    """Per query, the columns of the `k` documents it scores highest that are not its positives,
    hardest first (unit query and document vectors, as `evaluation.retrieval_vectors` gives)."""
    scores = queries.float() @ documents.float().T
    for row, columns in enumerate(positives):
        scores[row, columns] = float("-inf")
    values, columns = scores.topk(min(k, documents.shape[0]), dim=1)
    return [[c for v, c in zip(vs, cs) if v != float("-inf")] for vs, cs in zip(values.tolist(), columns.tolist())]
