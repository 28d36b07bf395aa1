"""Multi-turn dialogues built from SQuAD (no conversational set with passages was available).

Construction, per article:
1. The article's subject comes from its title: `Spectre_(2015_film)` → "Spectre";
   `The_Legend_of_Zelda:_Twilight_Princess` → also "Twilight Princess"; a two-word name
   (`Frédéric_Chopin`) → also "Chopin"; accents are folded ("Beyonce" matches "Beyoncé").
2. The reference that replaces it: "the film" from a parenthesised kind; "the earthquake"
   when the title ends in a common noun; "she"/"he" when the title looks like a name and the
   article uses that pronoun more than "it"; else "it". "Beyoncé's" becomes "her"; at the
   start or after an auxiliary ("did Beyoncé sing") the subject form is used, after any other
   word the object form ("voiced by her"). Questions where the name follows a determiner
   ("an iPod product") or starts a longer name ("iPod Touch") are left out of follow-ups.
   The rules are heuristics: a few follow-ups read awkwardly ("the current it ..." is
   avoided, "cities in it set records" is not); `original` keeps the real question.
3. Questions that name the subject are shuffled (fixed seed) and chained, `turns` at a time,
   into one dialogue. The first turn keeps the question as written; each follow-up has the
   subject replaced, so only the history says which article it is about. Every user message
   keeps the real question in `original`.
4. Every turn is one assistant message `[RQ] {answer}` retrieving its own paragraph, with the
   same overlap-mined hard negatives as single-hop SQuAD; the whole dialogue is one sequence.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass

from training.converters.squad import Article, answer_message
from training.data import Message, Record

_DETERMINERS = frozenset(["a", "an", "which", "what", "each", "every", "this", "that", "current"])
_AUXILIARIES = frozenset(["did", "does", "do", "was", "were", "is", "are", "has", "have", "had", "can", "could", "would", "will", "should"])
_PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his"), "it": ("it", "it", "its")}


def fold(text: str) -> str:
    """`text` without accents ("Beyoncé" → "Beyonce")."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Reference:
    """How an article's subject is named and how follow-ups refer to it."""

    names: tuple[str, ...]
    """Spellings of the subject, longest first."""
    subject: str
    """Replacement in subject position ("she", "the film")."""
    object: str
    """Replacement after a preposition or verb, or at the end ("her", "the film")."""
    possessive: str
    """Replacement for "X's" ("her", "the film's")."""

    @classmethod
    def for_article(cls, article: Article) -> Reference:
        """Derive names and reference words from the article's title and text."""
        title = article.title.replace("_", " ")
        kind = re.search(r"\(([^)]*)\)", title)
        base = re.sub(r"\s*\([^)]*\)", "", title).strip()
        names = {base, base.split(":")[-1].strip(), base.split(" of ")[-1]}
        words = base.split()
        if len(words) == 2 and words[1][:1].isupper():
            names.add(words[1])
        looks_like_a_name = len(words) <= 3 and all(w[:1].isupper() and w.isalpha() for w in words)
        names |= {fold(n) for n in names}
        if kind:
            noun = f"the {kind.group(1).split()[-1]}"
            return cls(_longest_first(names), noun, noun, f"{noun}'s")
        if words[-1].islower():
            noun = f"the {words[-1]}"
            return cls(_longest_first(names), noun, noun, f"{noun}'s")
        pronoun = _dominant_pronoun(article) if looks_like_a_name else "it"
        return cls(_longest_first(names), *_PRONOUNS[pronoun])

    def rewrite(self, question: str) -> str | None:
        """`question` with the subject replaced by the reference, or None when it is not named
        or is used in a way a reference cannot replace ("an iPod product", "iPod Touch")."""
        names = "|".join(re.escape(n) for n in self.names)
        pattern = rf"(?:\b(?P<before>\w+)\s+)?(?:the\s+)?(?<![\w:])(?P<name>{names})(?P<poss>'s)?\b(?P<next>\s+\w)?"
        match = re.search(pattern, question, re.I)
        before = (match["before"] or "").lower() if match else ""
        if match is None or before in _DETERMINERS or (match["next"] or "").strip().isupper():
            return None
        if match["poss"]:
            word = self.possessive
        elif before and before not in _AUXILIARIES:
            word = self.object
        else:
            word = self.subject
        start = match.start("before") if before else match.start()
        replacement = (f"{match['before']} " if before else "") + word + (match["next"] or "")
        if start == 0:
            replacement = replacement[0].upper() + replacement[1:]
        return question[:start] + replacement + question[match.end() :]


def dialogues(articles: list[Article], turns: int = 3, negatives: int = 3, seed: int = 0) -> list[Record]:
    """Chain each article's questions that name its subject into dialogues of `turns` turns."""
    rng = random.Random(seed)
    records = []
    for article in articles:
        reference = Reference.for_article(article)
        chained = [(q, reference.rewrite(q.text)) for q in article.questions]
        chained = [(q, r) for q, r in chained if r is not None]
        rng.shuffle(chained)
        for start in range(0, len(chained) - turns + 1, turns):
            messages = []
            for turn, (question, rewritten) in enumerate(chained[start : start + turns]):
                content = question.text if turn == 0 else rewritten
                messages.append(Message(role="user", content=content, original=question.text))
                messages.append(answer_message(question, article, negatives))
            first = chained[start][0]
            records.append(Record(id=f"dialogue-{first.id}", group=article.title, messages=messages))
    return records


def _longest_first(names: set[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: (-len(n), n)))


def _dominant_pronoun(article: Article) -> str:
    words = re.findall(r"[a-z]+", " ".join(article.docs.values()).lower())
    counts = {p: sum(words.count(w) for w in set(forms)) for p, forms in _PRONOUNS.items()}
    return max(counts, key=lambda p: counts[p])
