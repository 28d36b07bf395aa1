"""Probes for the chain tests: recorded callbacks, counted calls, searched vectors, reference states."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import torch
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.runnables import Runnable
from langchain_core.runnables.history import RunnableWithMessageHistory

from onegen_integrations.langchain import OneGenRetriever
from onegen_integrations.model import OneGenModel

TEXTS = [
    "Odile Marchetti founded the Varenne Institute in 1911.",
    "Odile Marchetti was born in Selbrook.",
    "The River Tamsey runs through Selbrook.",
]


class RecordingHandler(BaseCallbackHandler):
    """Keeps the chain and retriever callbacks it sees, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.runs: dict[str, uuid.UUID | None] = {}

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: uuid.UUID, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self.events.append(("chain_start", inputs))
        self.runs.setdefault("chain", run_id)

    def on_retriever_start(
        self, serialized: Any, query: str, *, run_id: uuid.UUID, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self.events.append(("retriever_start", query))
        self.runs["retriever_parent"] = parent_run_id

    def on_retriever_end(self, documents: Any, **kw: Any) -> None:
        self.events.append(("retriever_end", [doc.page_content for doc in documents]))

    def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self.events.append(("chain_end", outputs))


class ModelRunRecorder(BaseCallbackHandler):
    """Keeps the chat-model runs it sees: the messages each starts with, its parent, what it ends with."""

    def __init__(self) -> None:
        self.chains: list[uuid.UUID] = []
        self.starts: list[tuple[list[Any], uuid.UUID | None]] = []
        self.ends: list[Any] = []

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: uuid.UUID, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self.chains.append(run_id)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: uuid.UUID, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self.starts.append((messages[0], parent_run_id))

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.ends.append(response.generations[0][0].message)


class ScriptedAnswers:
    """A logits processor that makes a model write `answers`, one a turn, each ending its turn.

    A new turn is one whose generated ids do not extend the last call's; what is already written
    (a forced prefix too) is skipped, so an answer comes out whole. After the last answer, it
    repeats it. `turns` counts the turns it has answered.
    """

    def __init__(self, model: OneGenModel, *answers: str) -> None:
        self.model = model
        self.answers = answers
        self.turns = 0
        self._seen: list[int] = []

    def __call__(self, generated: list[int], logits: torch.Tensor) -> torch.Tensor:
        if not generated or list(generated[:-1]) != self._seen:
            self.turns += 1
        self._seen = list(generated)
        answer = self.answers[min(self.turns, len(self.answers)) - 1]
        rest = answer[len(self.model.tokenizer.decode(generated, skip_special_tokens=True)) :]
        forced = torch.full_like(logits, float("-inf"))
        forced[self.model.tokenize(rest)[0] if rest else self.model.tokenizer.eos_token_id] = 0.0
        return forced


def capture_search_vectors(retriever: OneGenRetriever) -> list[np.ndarray]:
    """Record every vector the Chroma store is searched with (wraps the instance's method)."""
    vectors: list[np.ndarray] = []
    search = retriever.store.similarity_search_by_vector_with_relevance_scores

    def recording(embedding: list[float], k: int = 4, **kwargs: Any) -> Any:
        vectors.append(np.asarray(embedding, dtype=np.float32))
        return search(embedding, k, **kwargs)

    retriever.store.similarity_search_by_vector_with_relevance_scores = recording
    return vectors


def count_calls(owner: object, name: str) -> list[tuple]:
    """Count calls of an instance's method by replacing it on the instance (no mocks)."""
    calls: list[tuple] = []
    method = getattr(owner, name)
    object.__setattr__(owner, name, lambda *args, **kwargs: calls.append(args) or method(*args, **kwargs))
    return calls


def rq_state(model: OneGenModel, token_ids: list[int]) -> np.ndarray:
    """The unit hidden state at the last of `token_ids`, from one fresh forward over all of them."""
    hidden = model.forward(token_ids, model.new_cache()).states[-1]
    return (hidden / hidden.norm()).float().numpy()


def with_message_history(chain: Runnable) -> tuple[RunnableWithMessageHistory, dict[str, InMemoryChatMessageHistory]]:
    """`chain` kept in `RunnableWithMessageHistory` over in-memory histories, and those histories."""
    histories: dict[str, InMemoryChatMessageHistory] = {}
    wrapped = RunnableWithMessageHistory(
        chain,
        lambda session_id: histories.setdefault(session_id, InMemoryChatMessageHistory()),
        input_messages_key="question",
        history_messages_key="history",
        output_messages_key="answer",
    )
    return wrapped, histories
