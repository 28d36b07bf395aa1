"""HotpotQA (distractor setting) → multi-hop records: `[RQ][RQ] {answer}`.

Each question's ten candidate paragraphs become documents `"{title}: {sentences}"` with the
title as id (a title seen again with other text gets a `#n` suffix). The two gold paragraphs
(titles in `supporting_facts`, in order of first mention) are the positives of the first and
second `[RQ]`; the eight distractors are both retrievals' hard negatives. After the first
passage the model must ask again, so the second hop can use what the first one returned.
"""

from __future__ import annotations

import json
from pathlib import Path

from onegen_training.data import Message, Record, Retrieval


def convert_hotpot(path: str | Path) -> tuple[list[dict[str, str]], list[Record]]:
    """Read a HotpotQA JSON file into (docs rows, records)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    docs: dict[str, str] = {}
    records = []
    for item in raw:
        ids = {title: _doc_id(docs, title, f"{title}: {''.join(sentences).strip()}") for title, sentences in item["context"]}
        gold = list(dict.fromkeys(title for title, _ in item["supporting_facts"]))
        distractors = [ids[t] for t in ids if t not in gold]
        retrievals = [Retrieval(positives=[ids[t]], negatives=distractors) for t in gold]
        content = "[RQ]" * len(gold) + f" {item['answer']}"
        records.append(
            Record(
                id=item["_id"],
                messages=[
                    Message(role="user", content=item["question"]),
                    Message(role="assistant", content=content, retrievals=retrievals),
                ],
                type=item.get("type"),
            )
        )
    return [{"id": d, "text": t} for d, t in docs.items()], records


def _doc_id(docs: dict[str, str], title: str, text: str) -> str:
    """The id of `text` under `title`, adding it to `docs` when new."""
    doc_id, n = title, 1
    while doc_id in docs and docs[doc_id] != text:
        n += 1
        doc_id = f"{title}#{n}"
    docs[doc_id] = text
    return doc_id
