"""LangChain tests share the process-wide model cache, so every "default" is one set of weights."""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from onegen_integrations.langchain import (
    ChatOneGen,
    OneGenChatChain,
    OneGenEmbeddings,
    OneGenRetriever,
    load_shared_model,
)
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from tests.langchain.probes import TEXTS

CORPUS = Path(__file__).parents[2] / "onegen_integrations" / "demo" / "corpus.jsonl"


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Iterator[None]:
    """Mark this folder's coroutine tests (the standard suites' included) for pytest-asyncio.

    The suites expect `asyncio_mode = "auto"`; the project runs in strict mode. As the
    innermost wrapper, this marks new items before pytest-asyncio's wrapper looks at them.
    """
    outcome = yield
    result = outcome.get_result()
    if inspect.iscoroutinefunction(obj) and result:
        for item in result if isinstance(result, list) else [result]:
            item.add_marker(pytest.mark.asyncio)


def shared_default_model() -> OneGenModel:
    """The default model as `ChatOneGen(model="default")` loads it (once per process)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return load_shared_model("default")


@pytest.fixture(scope="session")
def default_model() -> OneGenModel:
    """Overrides the root fixture: the same object the LangChain classes load by name."""
    return shared_default_model()


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, str]]:
    """The bundled demo corpus: `{"id", "title", "text"}` records."""
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


@pytest.fixture
def chat_chain(tiny_model: OneGenModel, tmp_path: Path) -> OneGenChatChain:
    """A chat chain on the tiny model over the probes' three texts, k=1, 6 new tokens per answer."""
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    retriever = OneGenRetriever.from_texts(TEXTS, OneGenEmbeddings(onegen_model=tiny_model), k=1, client=client)
    return OneGenChatChain(llm=ChatOneGen(onegen_model=tiny_model, max_tokens=6), retriever=retriever)
