"""The default model on llama.cpp against torch: `[RQ]` and `[RD]` vectors for each export type,
and the demo conversation's retrievals and answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from onegen_integrations.ingest import demo_conversation, demo_documents
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from tests.conftest import ListRetriever

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.default_model

CONVERSATION = demo_conversation()
CORPUS = [doc.text for doc in demo_documents()]


@pytest.fixture(scope="module")
def torch_default() -> OneGenModel:
    return OneGenModel.load("default", backend="torch")


def load(gguf_type: str) -> OneGenModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.load("default", backend="llama.cpp", gguf_type=gguf_type)


def rq_states(model: OneGenModel) -> np.ndarray:
    """The `[RQ]` vector after each turn of the demo dialogue, fed over one cache."""
    cache, states = model.new_cache(), []
    for message in CONVERSATION:
        states.append(model.forward([*model.tokenize(message), model.query_token_id], cache).states[-1].numpy())
    return np.stack(states)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(("gguf_type", "floor"), [("f16", 0.999), ("bf16", 0.999), ("q8_0", 0.99)])
def test_rq_and_rd_vectors_agree_with_torch(torch_default, gguf_type, floor):
    model = load(gguf_type)
    assert model.fingerprint == torch_default.fingerprint
    documents = cosines(model.embed_documents(CORPUS), torch_default.embed_documents(CORPUS))
    queries = cosines(rq_states(model), rq_states(torch_default))
    assert documents.min() >= floor, documents.min()
    assert queries.min() >= floor, queries.min()


def test_the_demo_conversation_is_the_same_on_both_backends(torch_default, default_model):
    assert default_model.backend.name == "llama.cpp"  # what `auto` gives the default without a GPU
    turns = []
    for model in (torch_default, default_model):
        session = model.session(ListRetriever(model, CORPUS), max_new_tokens=24)
        answers = [session.ask(message) for message in CONVERSATION]
        turns.append([(done.text, [hit.id for r in done.retrievals for hit in r.hits]) for done in answers])
    assert turns[0] == turns[1]
    assert all(ids for _, ids in turns[1])  # every turn retrieved
