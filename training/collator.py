"""Token sequences and batches, built from the runtime's own chat pieces.

A record becomes `preamble() + Σ turns [user_turn(history, message) + answer + EOS +
assistant_close(ended_with_eos=True)]`, where each `[RQ]` in an answer is followed by its
positive passages rendered with `config.passage_template`. Labels (CE targets) cover exactly
the answer text, each `[RQ]` and the EOS; the preamble, user turns, inserted passages (their
`<paragraph>` opener, which the engine supplies, included) and the template's closing tokens
are context only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from onegen_training.data import Record
from transformers import PreTrainedTokenizerBase

from onegen_integrations.chat_format import ChatFormat
from onegen_integrations.config import OneGenConfig
from onegen_integrations.tools import ToolSpec, tools_prompt

IGNORE = -100


@dataclass
class Query:
    """One retrieval to learn: where its vector comes from and what it should find."""

    positives: list[str]
    negatives: list[str]
    position: int = -1
    """Index of its `[RQ]` token in the sequence; -1 for a standalone query row."""
    tokens: list[int] = field(default_factory=list)
    """Token ids of a standalone query row (`config.query_template`); empty for an `[RQ]`."""


@dataclass
class Example:
    """One encoded record."""

    input_ids: list[int]
    labels: list[int]
    queries: list[Query]
    held: bool = False
    """Offers no tools: what the generation anchor holds (`TrainConfig.anchor_generation`)."""


class OneGenCollator:
    """Encodes records and pads them, with the documents they need, into batches.

    Args:
        tokenizer: the tokenizer with the OneGen tokens.
        config: the OneGen contract (token names, templates, system prompt).
        docs: document texts by id.
        max_doc_tokens: longest document row; longer texts are cut, keeping the `[RD]` suffix.
        standalone_queries: also learn `"{question}[RQ]"` rows (the model as a plain query
            encoder, for `OneGenModel.embed_query`), with the turn's first retrieval as target.
        in_batch_negatives: every document of the batch that is not a query's positive is one
            of its negatives (besides its hard negatives).
        hard_negatives: use at most the first N hard negatives of each retrieval (the miners
            rank them hardest first); none: all of them.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        config: OneGenConfig,
        docs: dict[str, str],
        *,
        max_doc_tokens: int = 256,
        standalone_queries: bool = True,
        in_batch_negatives: bool = True,
        hard_negatives: int | None = None,
    ) -> None:
        self.format = ChatFormat(tokenizer, config.system_prompt)
        self._formats: dict[str, ChatFormat] = {}
        self.config = config
        self.docs = docs
        self.max_doc_tokens = max_doc_tokens
        self.standalone_queries = standalone_queries
        self.in_batch_negatives = in_batch_negatives
        self.hard_negatives = hard_negatives
        self.query_id = tokenizer.convert_tokens_to_ids(config.tokens.query)
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_id
        self._doc_suffix = self.format.text.markup(config.document_template.split("{text}", 1)[1])
        self._doc_cache: dict[str, list[int]] = {}

    def encode(self, record: Record) -> Example:
        """The token ids, labels and retrievals of one record."""
        fmt, marker = self._format(record.tools), self.config.tokens.query
        ids = list(fmt.preamble())
        labels = [IGNORE] * len(ids)
        queries: list[Query] = []
        history: list[dict[str, str]] = []

        def add(tokens: list[int], learn: bool) -> None:
            ids.extend(tokens)
            labels.extend(tokens if learn else [IGNORE] * len(tokens))

        for user, answer in zip(record.messages[::2], record.messages[1::2]):
            add(fmt.user_turn(history, user.content), learn=False)
            segments = answer.content.split(marker)
            for index, segment in enumerate(segments):
                add(fmt.text.plain(segment), learn=True)
                if index == len(segments) - 1:
                    break
                retrieval = answer.retrievals[index]
                queries.append(Query(retrieval.positives, self._hard(retrieval.negatives), position=len(ids)))
                add([self.query_id], learn=True)
                for doc_id in retrieval.positives:
                    add(fmt.text.fill(self.config.passage_template, self.docs[doc_id]), learn=False)
            add([self.eos_id], learn=True)
            add(fmt.assistant_close(ended_with_eos=True), learn=False)
            if self.standalone_queries and answer.retrievals:
                text = getattr(user, "original", None) or user.content
                first = answer.retrievals[0]
                row = fmt.text.fill(self.config.query_template, text)
                queries.append(Query(first.positives, self._hard(first.negatives), tokens=row))
            history += [{"role": "user", "content": user.content}, {"role": "assistant", "content": answer.content}]
        return Example(ids, labels, queries, held=not record.tools)

    def _format(self, tools: list[dict[str, Any]]) -> ChatFormat:
        """The chat pieces of a record: its tools, if any, join the system prompt."""
        if not tools:
            return self.format
        key = json.dumps(tools, sort_keys=True)
        if key not in self._formats:
            system = tools_prompt(self.config.system_prompt, [ToolSpec.from_openai(t) for t in tools])
            self._formats[key] = ChatFormat(self.format.tokenizer, system, self.format.text)
        return self._formats[key]

    def _hard(self, negatives: list[str]) -> list[str]:
        return negatives if self.hard_negatives is None else negatives[: self.hard_negatives]

    def document_tokens(self, doc_id: str) -> list[int]:
        """Token ids of a document row `"{text}[RD]"`, cut to `max_doc_tokens` before the suffix."""
        if doc_id not in self._doc_cache:
            tokens = self.format.text.fill(self.config.document_template, self.docs[doc_id])
            if len(tokens) > self.max_doc_tokens:
                keep = self.max_doc_tokens - len(self._doc_suffix)
                tokens = tokens[: keep] + self._doc_suffix
            self._doc_cache[doc_id] = tokens
        return self._doc_cache[doc_id]

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Pad examples into a batch.

        Keys: `input_ids`, `attention_mask`, `labels` (sequences); `query_rows`, `query_cols`
        (where each `[RQ]` sits); `row_ids`, `row_mask` (document rows first, each document
        once, then standalone query rows); `positive_mask`, `negative_mask` of shape
        [queries, documents], queries ordered `[RQ]`s first, then standalone rows; `held_rows`
        (sequences whose record offers no tools).
        """
        input_ids, attention_mask = pad_rows([e.input_ids for e in examples], self.pad_id)
        labels, _ = pad_rows([e.labels for e in examples], IGNORE)
        marked = [(row, q) for row, e in enumerate(examples) for q in e.queries if q.position >= 0]
        standalone = [q for e in examples for q in e.queries if q.position < 0]
        queries = [q for _, q in marked] + standalone
        doc_ids = list(dict.fromkeys(d for q in queries for d in q.positives + q.negatives))
        column = {d: i for i, d in enumerate(doc_ids)}
        positive = torch.zeros(len(queries), len(doc_ids), dtype=torch.bool)
        negative = torch.zeros_like(positive)
        for index, query in enumerate(queries):
            positive[index, [column[d] for d in query.positives]] = True
            if self.in_batch_negatives:
                negative[index] = True
            negative[index, [column[d] for d in query.negatives]] = True
        negative &= ~positive
        row_ids, row_mask = pad_rows([self.document_tokens(d) for d in doc_ids] + [q.tokens for q in standalone], self.pad_id)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "query_rows": torch.tensor([row for row, _ in marked], dtype=torch.long),
            "query_cols": torch.tensor([q.position for _, q in marked], dtype=torch.long),
            "row_ids": row_ids,
            "row_mask": row_mask,
            "positive_mask": positive,
            "negative_mask": negative,
            "held_rows": torch.tensor([e.held for e in examples], dtype=torch.bool),
        }


def pad_rows(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows to the longest one; return (values, attention mask)."""
    width = max((len(r) for r in rows), default=0)
    values = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        values[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return values, mask
