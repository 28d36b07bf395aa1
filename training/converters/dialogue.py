"""Multi-turn dialogues built from SQuAD (no conversational set with passages was available).

Construction, per article:
1. The article's subject comes from its title: `Spectre_(2015_film)` → "Spectre";
   `The_Legend_of_Zelda:_Twilight_Princess` → also "Twilight Princess"; a two-word name
   (`Frédéric_Chopin`) → also "Chopin"; accents are folded ("Beyonce" matches "Beyoncé").
2. The reference that replaces it: "the film" from a parenthesised kind (a lowercase word, so
   `Sky_(United_Kingdom)` is not "the Kingdom"); "the earthquake" when the title ends in a
   common noun; "they" for a group named by a one-word plural (`Normans`, and `Huguenot`, whose
   text mostly says "Huguenots": only the plural is replaced, the singular being a modifier);
   "she"/"he" when the title looks like a name and the article uses that pronoun more than
   "it"; else "it". "Beyoncé's" becomes "her"; at the start, after an auxiliary ("did
   Beyoncé sing") or a clause opener ("when Beyoncé was") the subject form is used, after any
   other word the object form ("voiced by her"). Questions where the name follows a determiner
   ("an iPod product") or is part of a longer name ("Berlin Huguenots", "iPod Touch", "Sky+")
   are left out of follow-ups.
   The rules are heuristics: a few follow-ups read awkwardly ("the current it ..." is
   avoided, "cities in it set records" is not); `original` keeps the real question.
3. Questions that name the subject are shuffled (fixed seed) and chained, `turns` at a time,
   into one dialogue; `rounds` > 1 reshuffles and chains them again. The first turn keeps the
   question as written; each follow-up has the subject replaced, so only the history says which
   article it is about. Every user message keeps the real question in `original`.
4. Every turn is one assistant message `[RQ] {answer}` retrieving its own paragraph, with the
   same overlap-mined hard negatives as single-hop SQuAD; the whole dialogue is one sequence.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass

from onegen_training.converters.squad import Article, answer_message
from onegen_training.data import Message, Record

_DETERMINERS = frozenset(["a", "an", "which", "what", "each", "every", "this", "that", "current"])
_AUXILIARIES = frozenset(["did", "does", "do", "was", "were", "is", "are", "has", "have", "had", "can", "could", "would", "will", "should"])
_CLAUSE_OPENERS = frozenset(["when", "where", "why", "how", "while", "because", "although", "if", "whether", "that", "and", "or", "but"])
_PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his"), "it": ("it", "it", "its"),
             "they": ("they", "them", "their")}


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
        spellings = _longest_first(names | {fold(n) for n in names})
        if kind and kind.group(1).split()[-1].islower():  # "(2015 film)", not "(United Kingdom)"
            noun = f"the {kind.group(1).split()[-1]}"
            return cls(spellings, noun, noun, f"{noun}'s")
        if words[-1].islower():
            noun = f"the {words[-1]}"
            return cls(spellings, noun, noun, f"{noun}'s")
        group = _group_name(base, article) if len(words) == 1 else None
        if group:  # "Normans", "Huguenots": the singular is a modifier ("Huguenot colonists"), left alone
            return cls(_longest_first({group, fold(group)}), *_PRONOUNS["they"])
        pronoun = _dominant_pronoun(article) if looks_like_a_name else "it"
        return cls(spellings, *_PRONOUNS[pronoun])

    def rewrite(self, question: str) -> str | None:
        """`question` with the subject replaced by the reference, or None when it is not named
        or is used in a way a reference cannot replace ("an iPod product", "iPod Touch")."""
        names = "|".join(re.escape(n) for n in self.names)
        pattern = (rf"(?:\b(?P<before>(?!the\b)\w+)\s+)?(?:the\s+)?(?<![\w:])(?P<name>{names})(?P<poss>'s\b|'(?=\s))?"
                   rf"(?=[\s?.,!;:]|$)(?P<next>\s+\w)?")
        match = re.search(pattern, question, re.I)
        if match is None:
            return None
        before = (match["before"] or "").lower()
        part_of_a_name = (match["before"] or "")[:1].isupper() and match.start() > 0  # "Berlin Huguenots"
        if before in _DETERMINERS or part_of_a_name or (match["next"] or "").strip().isupper():
            return None
        if match["poss"]:
            word = self.possessive
        elif before and before not in _AUXILIARIES and before not in _CLAUSE_OPENERS:
            word = self.object
        else:
            word = self.subject
        start = match.start("before") if before else match.start()
        replacement = (f"{match['before']} " if before else "") + word + (match["next"] or "")
        if start == 0:
            replacement = replacement[0].upper() + replacement[1:]
        return question[:start] + replacement + question[match.end() :]


def dialogues(articles: list[Article], turns: int = 3, negatives: int = 3, seed: int = 0, rounds: int = 1) -> list[Record]:
    """Chain each article's questions that name its subject into dialogues of `turns` turns.

    Each of `rounds` reshuffles the questions, so a question recurs as an opener and as a
    follow-up after different turns (the first round's ids have no suffix).
    """
    rng, reshuffle = random.Random(seed), random.Random(seed + 1)  # round 0 does not depend on `rounds`
    records = []
    for article in articles:
        reference = Reference.for_article(article)
        chained = [(q, reference.rewrite(q.text)) for q in article.questions]
        chained = [(q, r) for q, r in chained if r is not None]
        for round_ in range(rounds):
            (reshuffle if round_ else rng).shuffle(chained)
            suffix = f"-r{round_}" if round_ else ""
            for start in range(0, len(chained) - turns + 1, turns):
                messages = []
                for turn, (question, rewritten) in enumerate(chained[start : start + turns]):
                    content = question.text if turn == 0 else rewritten
                    messages.append(Message(role="user", content=content, original=question.text))
                    messages.append(answer_message(question, article, negatives))
                first = chained[start][0]
                records.append(Record(id=f"dialogue-{first.id}{suffix}", group=article.title, messages=messages))
    return records


def _longest_first(names: set[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: (-len(n), n)))


def _group_name(word: str, article: Article) -> str | None:
    """The plural that names a one-word group subject ("Normans", "Huguenots"), or None: the
    title is capitalised mid-sentence in the text and is a plural whose singular the text uses,
    or its plural is a third of its uses."""
    text = " ".join(article.docs.values())
    if not re.search(rf"[a-z,] {re.escape(word)}", text):  # a common noun ("antibiotics"), not a group's name
        return None
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and re.search(rf"\b{re.escape(word[:-1])}\b", text):
        return word
    plural, uses = f"{word}s", len(re.findall(rf"\b{re.escape(word)}", text))
    return plural if uses and 3 * len(re.findall(rf"\b{re.escape(plural)}\b", text)) >= uses else None


def _dominant_pronoun(article: Article) -> str:
    words = re.findall(r"[a-z]+", " ".join(article.docs.values()).lower())
    counts = {p: sum(words.count(w) for w in set(forms)) for p, forms in _PRONOUNS.items() if p != "they"}
    return max(counts, key=lambda p: counts[p])
