"""Held-out evaluation cases read from the training converters' JSONL output.

`make eval-data` (or `python -m onegen_training convert squad|dialogue DEV OUT --eval-fraction 0
--negatives 0`) writes `data/eval/squad/` and `data/eval/dialogue/` from the SQuAD dev articles,
which share no article with the training file. This module only reads those files (plain JSON:
the runtime never imports `training`). Every record's messages alternate user / assistant; an
assistant message `"[RQ] {answer}"` names its gold paragraph in `retrievals[0].positives`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from onegen_integrations.errors import InputFileError


@dataclass(frozen=True)
class Turn:
    """One user message, the paragraph that answers it and the accepted answers."""

    message: str
    """What the user says (a follow-up may only make sense with the history)."""
    gold_ids: tuple[str, ...]
    answers: tuple[str, ...]
    original: str
    """The unedited SQuAD question (equal to `message` except in dialogue follow-ups)."""


@dataclass(frozen=True)
class Conversation:
    """A held-out case: one turn (single-hop) or several about one article (dialogue)."""

    id: str
    article: str
    turns: tuple[Turn, ...]


CHAT_REQUESTS = (
    "Hey, what's up?", "Thanks a lot, bye!", "Can you write two lines about a winter morning?",
    "Turn this into a polite email: send me the invoice now",
    "Give me a cheerful sentence to start a Monday.",
    "Summarise in five words: the bus was late so I walked to work in the rain.",
    "What rhymes with 'light'?", "Suggest three names for a pet goldfish.",
    "Make this shorter: I am writing to let you know that I will not be able to attend the meeting.",
    "How should I begin a birthday toast for my sister?", "Tell me something that makes people smile.",
    "Write a short thank-you note to a teacher.", "What is 12 times 7?", "Count from one to five.",
    "Help me plan a relaxing Sunday.", "Fix the grammar: she dont like apples",
    "Describe the colour blue in one sentence.", "Good evening! How are you today?",
    "Say something kind about rainy days.", "Give me a two-word name for a coffee shop.",
)
"""Requests that need no document, written for the evaluation (none is a training prompt): a
model that emits `[RQ]` for them retrieves needlessly."""


@dataclass(frozen=True)
class EvalSet:
    """Single-hop and dialogue cases and the corpus they are retrieved from."""

    single: list[Conversation]
    dialogues: list[Conversation]
    docs: dict[str, str]
    """Every paragraph of the chosen articles, by id (`"Title#n"`), and any distractors."""
    chat: tuple[str, ...] = CHAT_REQUESTS
    """No-retrieval requests (`onegen` counts the ones it retrieves for)."""


def article_of(doc_id: str) -> str:
    """The article a paragraph id belongs to (`"Super_Bowl_50#3"` → `"Super_Bowl_50"`)."""
    return doc_id.rsplit("#", 1)[0]


EVAL_ARTICLES = 6
"""Held-out articles the evaluation draws from; the default model's recipe trains on none of them."""
EVAL_SINGLE = 180
"""Single-hop questions drawn (fewer left paired differences inside the noise)."""
EVAL_DIALOGUES = 120
"""Three-turn dialogues drawn: 240 follow-ups."""


def evaluation_articles(dialogue_dir: str | Path, count: int = EVAL_ARTICLES) -> list[str]:
    """The first `count` articles, in file order, that have converted dialogues in `dialogue_dir`."""
    return list(dict.fromkeys(_conversation(r, {}).article for r in _records(Path(dialogue_dir))))[:count]


def load_eval_set(
    data_dir: str | Path,
    *,
    articles: int = EVAL_ARTICLES,
    single: int = EVAL_SINGLE,
    dialogues: int = EVAL_DIALOGUES,
    squad_source: str | Path | None = None,
    distractors: bool = False,
) -> EvalSet:
    """Cases from `data_dir/squad` and `data_dir/dialogue`, over the first `articles` articles
    that have dialogues; questions are taken round-robin across those articles so each counts.

    `squad_source` (the SQuAD JSON, gzipped or not) adds every accepted answer of a question;
    without it the one answer in the converted records is the gold answer. `distractors` puts
    every paragraph of `data_dir/squad` in the corpus, not only the chosen articles': a
    follow-up that lost its subject can then land in any of them.
    """
    root = Path(data_dir)
    for part in ("squad", "dialogue"):
        if not (root / part / "docs.jsonl").is_file():
            raise InputFileError(
                f"{root / part} holds no converted data: run `make eval-data` (python -m onegen_training "
                f"convert {part} <SQuAD dev file> {root / part} --eval-fraction 0 --negatives 0)"
            )
    answers = _all_answers(Path(squad_source)) if squad_source else {}
    dialogue_cases = [_conversation(r, answers) for r in _records(root / "dialogue")]
    chosen = evaluation_articles(root / "dialogue", articles)
    single_cases = [c for c in (_conversation(r, answers) for r in _records(root / "squad")) if c.article in chosen]
    docs = {d["id"]: d["text"] for d in _jsonl(root / "squad" / "docs.jsonl") if distractors or article_of(d["id"]) in chosen}
    return EvalSet(
        single=_round_robin(single_cases, chosen, single),
        dialogues=_round_robin([c for c in dialogue_cases if c.article in chosen], chosen, dialogues),
        docs=docs,
    )


def _round_robin(cases: list[Conversation], articles: list[str], limit: int) -> list[Conversation]:
    by_article = {a: [c for c in cases if c.article == a] for a in articles}
    picked: list[Conversation] = []
    for index in range(max((len(v) for v in by_article.values()), default=0)):
        for article in articles:
            if len(picked) < limit and index < len(by_article[article]):
                picked.append(by_article[article][index])
    return picked


def _conversation(record: dict, answers: dict[str, list[str]]) -> Conversation:
    messages = record["messages"]
    turns = []
    for user, assistant in zip(messages[::2], messages[1::2]):
        original = user.get("original") or user["content"]
        answer = assistant["content"].replace("[RQ]", "").strip()
        gold = tuple(assistant["retrievals"][0]["positives"])
        turns.append(Turn(user["content"], gold, tuple(dict.fromkeys([answer, *answers.get(original, [])])), original))
    return Conversation(record["id"], article_of(turns[0].gold_ids[0]), tuple(turns))


def _records(directory: Path) -> Iterator[dict]:
    for name in ("train.jsonl", "eval.jsonl"):
        if (directory / name).is_file():
            yield from _jsonl(directory / name)


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _all_answers(path: Path) -> dict[str, list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as source:
        data = json.load(source)["data"]
    return {
        qa["question"]: [a["text"] for a in qa["answers"]]
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }
