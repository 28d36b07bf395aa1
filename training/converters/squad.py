"""SQuAD v1.1 → single-hop records: question → `[RQ]` → its paragraph → the answer.

Every paragraph becomes a document `"{title}#{index}"`. Each question's hard negatives are
the other paragraphs of its article that share the most content words with it
(`training.negatives.by_overlap`), so they are on topic but do not hold the answer.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from onegen_training.data import Message, Record, Retrieval
from onegen_training.negatives import by_overlap, content_words


@dataclass
class Question:
    """One SQuAD question with its paragraph and first answer."""

    id: str
    text: str
    answer: str
    doc_id: str


@dataclass
class Article:
    """One SQuAD article: its paragraphs as documents and its questions."""

    title: str
    docs: dict[str, str] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)

    def hard_negatives(self, question: Question, k: int) -> list[str]:
        """The `k` other paragraphs of this article that overlap `question` most."""
        others = {d: w for d, w in self.words.items() if d != question.doc_id}
        return by_overlap(question.text, others, k)

    @cached_property
    def words(self) -> dict[str, set[str]]:
        """Content words of each paragraph (computed once)."""
        return {d: content_words(t) for d, t in self.docs.items()}


def read_squad(path: str | Path) -> list[Article]:
    """Read a SQuAD v1.1 JSON file (optionally gzipped) into articles."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)["data"]
    articles = []
    for raw in data:
        article = Article(title=raw["title"])
        for index, paragraph in enumerate(raw["paragraphs"]):
            doc_id = f"{raw['title']}#{index}"
            article.docs[doc_id] = paragraph["context"]
            for qa in paragraph["qas"]:
                if qa["answers"]:
                    article.questions.append(Question(qa["id"], qa["question"].strip(), qa["answers"][0]["text"], doc_id))
        articles.append(article)
    return articles


def documents(articles: list[Article]) -> list[dict[str, str]]:
    """Every paragraph as a `docs.jsonl` row."""
    return [{"id": d, "text": t, "title": a.title} for a in articles for d, t in a.docs.items()]


def answer_message(question: Question, article: Article, negatives: int) -> Message:
    """The assistant turn `[RQ] {answer}` retrieving the question's paragraph."""
    retrieval = Retrieval(positives=[question.doc_id], negatives=article.hard_negatives(question, negatives))
    return Message(role="assistant", content=f"[RQ] {question.answer}", retrievals=[retrieval])


def single_hop(articles: list[Article], negatives: int = 3) -> list[Record]:
    """One record per question: user question, assistant `[RQ] {answer}`."""
    return [
        Record(
            id=q.id,
            group=a.title,
            messages=[Message(role="user", content=q.text), answer_message(q, a, negatives)],
        )
        for a in articles
        for q in a.questions
    ]
