"""Run held-out cases through OneGen and through a separate-retriever pipeline, and score them.

Systems (each a `System`: a generator model, a way to retrieve, and a retrieval mode):
- `onegen`: the trained model in one pass; it decides itself when to emit `[RQ]` (`auto`), and
  its `[RQ]` hidden state, computed over the whole dialogue in the cache, is the query. A turn in
  which it never retrieves counts as a retrieval miss.
- `onegen-forced`: the trained model with `[RQ]` forced at the start of each answer (its query
  vectors, whether or not it would have asked).
- `onegen-replayed` / `onegen-replayed-bare`: `onegen` used statelessly, as a web server or a
  LangGraph checkpointer does: each turn is a new session given the dialogue so far as messages
  (`load_history`), with each answer's retrievals in its metadata, or without them (the session
  then decides again at each replayed answer whether to retrieve).
- `minilm-raw` / `minilm-history`: the pipeline a framework user builds from the base model: a
  separate retriever, `MiniLMEncoder` (all-MiniLM-L6-v2), embeds the user's message alone, or the
  user messages of the dialogue so far joined with it, and its best passage goes into the user
  message as context (`CONTEXT_PROMPT`); the base answers as an ordinary chat model, with no
  OneGen tokens (it was never trained on them).
- `base`: the untrained base model in one pass, `[RQ]` forced (it would never emit it): the
  retrieval the OneGen tokens give before training.
- `onegen-gold`: the trained model with the gold paragraph inserted after a forced `[RQ]`;
  `base-gold`: the base model with the gold paragraph as context, prompted as the MiniLM
  pipeline. Together: answer quality alone, trained against base.

One passage (the best hit) is used per turn; Recall@k reads the ranking of the first retrieval of
each turn. Dialogues run turn after turn in one session, so later turns see the model's own
earlier answers (and, prompted, the earlier contexts), as in use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onegen_evaluation.datasets import EvalSet, Turn, article_of
from onegen_evaluation.metrics import exact_match, f1_score, recall_at_k, sign_test

from onegen_integrations.events import DoneEvent
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY, retrievals_to_json
from onegen_integrations.retrieval import Hit, RetrievalQuery

RANK_DEPTH = 5
EVAL_SYSTEMS = (
    "onegen", "onegen-forced", "onegen-replayed", "onegen-replayed-bare",
    "minilm-raw", "minilm-history", "base", "onegen-gold", "base-gold",
)
REPLAYED = {"onegen-replayed": True, "onegen-replayed-bare": False}
"""Stateless systems, and whether the history they are given keeps each answer's retrievals."""
CONTEXT_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly, using the context given with each question."
CONTEXT_PROMPT = "Context:\n{passage}\n\nUsing the context above, answer briefly.\nQuestion: {question}"
"""The user message of a prompted pipeline turn (`System.prompted`)."""


class RankingRetriever:
    """Brute-force cosine search over a fixed corpus that remembers each ranking it returns.

    `query_vector` (set per turn by the runner) replaces the engine's `[RQ]` vector when the
    query comes from elsewhere (a separate encoder, or the gold paragraph).
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray, insert: int = 1) -> None:
        self.ids, self.texts, self.vectors, self.insert = list(ids), list(texts), vectors, insert
        self.rankings: list[list[str]] = []
        self.query_vector: np.ndarray | None = None

    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        """The best `insert` hits; the first `RANK_DEPTH` ids are recorded in `rankings`."""
        return self.rank(query.vector if self.query_vector is None else self.query_vector)

    def rank(self, vector: np.ndarray) -> list[Hit]:
        """`retrieve` for a query vector from elsewhere."""
        scores = self.vectors @ vector
        order = np.argsort(-scores, kind="stable")[: max(RANK_DEPTH, self.insert)]
        self.rankings.append([self.ids[i] for i in order])
        return [Hit(id=self.ids[i], text=self.texts[i], score=float(scores[i])) for i in order[: self.insert]]


QueryFn = Callable[[Sequence[Turn], Turn], "np.ndarray | None"]
"""Given the dialogue's earlier turns and the current one, the query vector (None: the `[RQ]` state)."""


@dataclass
class System:
    """A generator, the corpus vectors it retrieves from, and how queries are made."""

    name: str
    model: OneGenModel
    doc_vectors: np.ndarray
    retrieval: str = "auto"
    query: QueryFn | None = None
    description: str = ""
    prompted: bool = False
    """The hit goes into the user message as context (`CONTEXT_PROMPT`) instead of after `[RQ]`."""
    replay: bool | None = None
    """Stateless: each turn is a new session given the history as messages, with (True) or
    without (False) each answer's retrievals; None keeps one session per dialogue."""


@dataclass
class Scores:
    """Averages over turns of one kind (single-hop, dialogue, dialogue follow-ups)."""

    turns: int = 0
    recall_at_1: float = 0.0
    recall_at_5: float = 0.0
    exact_match: float = 0.0
    f1: float = 0.0
    retrieved: float = 0.0
    """Share of turns in which the model retrieved at all."""


@dataclass
class SystemResult:
    """Scores of one system on the single-hop and dialogue cases."""

    name: str
    description: str
    single: Scores
    dialogue: Scores
    follow_ups: Scores
    seconds: float
    examples: list[dict] = field(default_factory=list)
    needless_retrievals: float | None = None
    """Share of `EvalSet.chat` requests the model emitted `[RQ]` for (`auto` systems only)."""


def run_system(
    system: System,
    data: EvalSet,
    *,
    max_new_tokens: int = 16,
    max_passage_tokens: int = 192,
    single: bool = True,
    progress: bool = False,
) -> SystemResult:
    """Run every case through `system` and score it (`single=False`: the dialogues only)."""
    ids = list(data.docs)
    retriever = RankingRetriever(ids, [data.docs[i] for i in ids], system.doc_vectors)
    started = time.perf_counter()
    rows: dict[str, list[dict]] = {"single": [], "dialogue": [], "follow_ups": []}
    cases = [("single", c) for c in data.single if single] + [("dialogue", c) for c in data.dialogues]
    for number, (kind, case) in enumerate(cases, 1):
        if system.prompted:
            session = system.model.session(None, max_new_tokens=max_new_tokens, system_prompt=CONTEXT_SYSTEM_PROMPT)
        else:
            session = system.model.session(
                retriever, retrieval=system.retrieval, k=1, max_new_tokens=max_new_tokens, max_passage_tokens=max_passage_tokens
            )
        history: list[dict[str, Any]] = []
        for index, turn in enumerate(case.turns):
            if system.replay is not None and history:
                session = system.model.session(
                    retriever, retrieval=system.retrieval, k=1, max_new_tokens=max_new_tokens, max_passage_tokens=max_passage_tokens
                )
                session.load_history(history)
            retriever.query_vector = system.query(case.turns[:index], turn) if system.query else None
            before = len(retriever.rankings)
            message = turn.message
            if system.prompted:
                passage = _cut(system.model, retriever.rank(retriever.query_vector)[0].text, max_passage_tokens)
                message = CONTEXT_PROMPT.format(passage=passage, question=turn.message)
            done = session.ask(message)
            history += _exchange(message, done, with_retrievals=bool(system.replay))
            ranking = retriever.rankings[before] if len(retriever.rankings) > before else []
            row = {
                "case": case.id, "turn": index, "message": turn.message, "gold": list(turn.gold_ids),
                "ranking": ranking, "answer": done.text, "answers": list(turn.answers),
                "retrieved": float(bool(ranking)),
                "recall_at_1": recall_at_k(ranking, turn.gold_ids, 1),
                "recall_at_5": recall_at_k(ranking, turn.gold_ids, 5),
                "exact_match": exact_match(done.text, turn.answers),
                "f1": f1_score(done.text, turn.answers),
            }
            rows[kind].append(row)
            if kind == "dialogue" and index > 0:
                rows["follow_ups"].append(row)
        if progress:
            print(f"  {system.name}: case {number}/{len(cases)}", flush=True)
    measure_needless = system.retrieval == "auto" and system.replay is None
    needless = _needless_retrievals(system, data.chat, retriever, max_new_tokens) if measure_needless else None
    return SystemResult(
        name=system.name,
        description=system.description,
        single=_average(rows["single"]),
        dialogue=_average(rows["dialogue"]),
        follow_ups=_average(rows["follow_ups"]),
        seconds=time.perf_counter() - started,
        examples=rows["single"] + rows["dialogue"],
        needless_retrievals=needless,
    )


def _exchange(message: str, done: DoneEvent, *, with_retrievals: bool) -> list[dict[str, Any]]:
    """One turn as the messages an app would keep: the answer's retrievals in its metadata, or not."""
    answer: dict[str, Any] = {"role": "assistant", "content": done.text}
    if with_retrievals:
        answer[RETRIEVALS_KEY] = retrievals_to_json(done.retrievals)
    return [{"role": "user", "content": message}, answer]


def _needless_retrievals(system: System, requests: Sequence[str], retriever: RankingRetriever, max_new_tokens: int) -> float:
    """Share of `requests` (each in a new session) in which the model emitted `[RQ]`."""
    retrieved = 0
    for request in requests:
        before = len(retriever.rankings)
        system.model.session(retriever, retrieval="auto", k=1, max_new_tokens=max_new_tokens).ask(request)
        retrieved += len(retriever.rankings) > before
    return retrieved / max(len(requests), 1)


def gold_query(doc_vectors: np.ndarray, ids: Sequence[str]) -> QueryFn:
    """Queries that find the gold paragraph first: its own document vector."""
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    return lambda history, turn: doc_vectors[position[turn.gold_ids[0]]]


def text_query(encode: Callable[[list[str]], np.ndarray], *, with_history: bool) -> QueryFn:
    """Queries from a separate text encoder: the user message, or the user messages so far joined."""

    def query(history: Sequence[Turn], turn: Turn) -> np.ndarray:
        parts = [t.message for t in history] + [turn.message] if with_history else [turn.message]
        return encode([" ".join(parts)])[0]

    return query


def format_table(results: Sequence[SystemResult]) -> str:
    """A Markdown table: Recall@1/@5 and EM/F1 on single-hop and dialogue turns, % in points
    ("needless [RQ]": no-retrieval requests retrieved for; "-" where not measured)."""
    lines = [
        "| system | single R@1 | single R@5 | single EM | single F1 | dialogue R@1 | dialogue R@5 "
        "| follow-up R@1 | follow-up R@5 | dialogue EM | dialogue F1 | retrieved | needless [RQ] | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, d, f = r.single, r.dialogue, r.follow_ups
        retrieved = (s.retrieved * s.turns + d.retrieved * d.turns) / max(s.turns + d.turns, 1)
        cells = [s.recall_at_1, s.recall_at_5, s.exact_match, s.f1, d.recall_at_1, d.recall_at_5,
                 f.recall_at_1, f.recall_at_5, d.exact_match, d.f1, retrieved, r.needless_retrievals]
        shown = ["-" if c is None else f"{100 * c:.1f}" for c in cells]
        lines.append(f"| {r.name} | " + " | ".join(shown) + f" | {r.seconds:.0f} |")
    return "\n".join(lines)


def format_paired(results: Sequence[SystemResult], against: str = "minilm-raw") -> str:
    """A Markdown table comparing each OneGen system with `against` on the same turns: how often
    each alone found the gold paragraph (R@1 and R@5), on first turns and on follow-ups, and how
    often each alone ranked a paragraph of the gold article first on a follow-up (the part of
    retrieval that depends on resolving "it", "he", "they"). Paired counts separate a real
    difference from the noise of a few dozen cases; p is their two-sided sign test. Empty if
    `against` is not among `results`."""
    baseline = next((r for r in results if r.name == against), None)
    if baseline is None:
        return ""
    theirs = {(e["case"], e["turn"]): e for e in baseline.examples}
    columns: list[tuple[bool, Callable[[dict], float]]] = [
        (False, lambda e: e["recall_at_1"]), (False, lambda e: e["recall_at_5"]),
        (True, lambda e: e["recall_at_1"]), (True, lambda e: e["recall_at_5"]), (True, right_article),
    ]
    lines = [f"| system vs {against} | first-turn R@1 | first-turn R@5 | follow-up R@1 | follow-up R@5 "
             "| follow-up article at 1 |", "|---|---|---|---|---|---|"]
    for r in results:
        if not r.name.startswith("onegen") or r.name == "onegen-gold":
            continue
        ours = {(e["case"], e["turn"]): e for e in r.examples if (e["case"], e["turn"]) in theirs}
        cells = []
        for follow_up, score in columns:
            keys = [k for k in ours if (k[1] > 0) == follow_up]
            won = sum(score(ours[k]) > score(theirs[k]) for k in keys)
            lost = sum(score(ours[k]) < score(theirs[k]) for k in keys)
            cells.append(f"{won} won, {lost} lost of {len(keys)}, {_p_value(sign_test(won, lost))}")
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _p_value(p: float) -> str:
    """`p 0.34`, `p 0.004` or `p < 0.001`: small values keep a significant digit."""
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}" if p < 0.01 else f"p {p:.2f}"


def right_article(example: dict) -> float:
    """1.0 if the paragraph ranked first belongs to the gold paragraph's article, else 0.0."""
    ranking = example["ranking"]
    return float(bool(ranking) and article_of(ranking[0]) in {article_of(g) for g in example["gold"]})


def _cut(model: OneGenModel, text: str, max_tokens: int) -> str:
    ids = model.tokenize(text)
    return text if len(ids) <= max_tokens else model.tokenizer.decode(ids[:max_tokens])


def _average(rows: list[dict]) -> Scores:
    if not rows:
        return Scores()
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("recall_at_1", "recall_at_5", "exact_match", "f1", "retrieved")}
    return Scores(turns=len(rows), **mean)


def evaluate(
    data: EvalSet,
    systems: Sequence[str],
    *,
    trained: Callable[[], OneGenModel],
    base: Callable[[], OneGenModel],
    max_new_tokens: int,
    max_passage_tokens: int,
    on_result: Callable[[str, SystemResult], None] | None = None,
) -> dict[str, SystemResult]:
    """Run the named systems (of `EVAL_SYSTEMS`) on `data`; return their results by name.

    `trained` and `base` load the two generators, each once and only if a system needs it;
    the corpus is embedded once per generator (and once by MiniLM). `on_result` sees each
    result as soon as it exists, so a long evaluation can be saved as it goes.
    """
    ids = list(data.docs)
    texts = [data.docs[i] for i in ids]
    loaders = {"trained": trained, "base": base}
    generators: dict[str, tuple[OneGenModel, np.ndarray]] = {}
    minilm: list[Any] = []
    done: dict[str, SystemResult] = {}
    for name in systems:
        which = "trained" if name.startswith("onegen") else "base"
        if which not in generators:
            chosen = loaders[which]()
            generators[which] = (chosen, chosen.embed_documents(texts, batch_size=8))
        model, doc_vectors = generators[which]
        if name in ("onegen", "onegen-forced", "base"):
            forced = name != "onegen"
            system = System(name, model, doc_vectors, "always" if forced else "auto",
                            description=f"{model.name}, one pass" + (", [RQ] forced" if forced else ""))
        elif name in REPLAYED:
            kept = "with" if REPLAYED[name] else "without"
            system = System(name, model, doc_vectors, "auto", replay=REPLAYED[name],
                            description=f"{model.name}, history given as messages {kept} retrievals")
        elif name == "onegen-gold":
            system = System(name, model, doc_vectors, "always", gold_query(doc_vectors, ids),
                            description=f"{model.name}, gold paragraph inserted")
        elif name == "base-gold":
            system = System(name, model, doc_vectors, "never", gold_query(doc_vectors, ids),
                            description=f"{model.name}, gold paragraph as context", prompted=True)
        else:
            if not minilm:
                from onegen_evaluation.minilm import MiniLMEncoder

                encoder = MiniLMEncoder()
                minilm.extend([encoder, encoder.encode(texts)])
            system = System(name, model, minilm[1], "never",
                            text_query(minilm[0].encode, with_history=name == "minilm-history"),
                            description=f"{model.name} + all-MiniLM-L6-v2, passage as context", prompted=True)
        print(f"eval: running {name} ({system.description})", flush=True)
        # Without history, the MiniLM queries and the stateless systems match their live
        # counterparts: single-hop scores are shared.
        reuse = done.get({"minilm-history": "minilm-raw", **dict.fromkeys(REPLAYED, "onegen")}.get(name, ""))
        result = run_system(system, data, max_new_tokens=max_new_tokens,
                            max_passage_tokens=max_passage_tokens, single=reuse is None)
        if reuse is not None:
            result.single = reuse.single
        done[name] = result
        if on_result is not None:
            on_result(name, result)
    return done


def results_from_json(results: dict[str, dict]) -> list[SystemResult]:
    """Results saved with `dataclasses.asdict`, back as `SystemResult`s in `EVAL_SYSTEMS` order."""
    table = []
    for name in [n for n in EVAL_SYSTEMS if n in results]:
        row = dict(results[name])
        scores = {k: Scores(**row.pop(k)) for k in ("single", "dialogue", "follow_ups")}
        table.append(SystemResult(**row, **scores))
    return table
