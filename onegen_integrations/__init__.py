"""OneGen for the RAG frameworks people use: one LLM that generates and retrieves in one pass.

The names below are the public core; framework adapters live in `onegen_integrations.llama_index`
and `onegen_integrations.langchain` (each behind its extra). They are imported on first use, so
`import onegen_integrations.errors` (or `onegen --help`) does not load torch, transformers or
chromadb.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onegen_integrations.config import OneGenConfig, OneGenTokens
    from onegen_integrations.dialogue import Dialogue
    from onegen_integrations.events import DoneEvent, RetrievalEvent, TokenEvent, Usage
    from onegen_integrations.ingest import IndexReport, index_paths
    from onegen_integrations.model import OneGenModel
    from onegen_integrations.options import GenerationOptions
    from onegen_integrations.retrieval import Hit, RetrievalQuery, Retriever
    from onegen_integrations.session import OneGenSession
    from onegen_integrations.splitter import TextSplitter
    from onegen_integrations.store import ChromaDocumentStore

_EXPORTS = {
    "ChromaDocumentStore": "store",
    "Dialogue": "dialogue",
    "DoneEvent": "events",
    "GenerationOptions": "options",
    "Hit": "retrieval",
    "IndexReport": "ingest",
    "OneGenConfig": "config",
    "OneGenModel": "model",
    "OneGenSession": "session",
    "OneGenTokens": "config",
    "RetrievalEvent": "events",
    "RetrievalQuery": "retrieval",
    "Retriever": "retrieval",
    "TextSplitter": "splitter",
    "TokenEvent": "events",
    "Usage": "events",
    "index_paths": "ingest",
}

__all__ = [
    "ChromaDocumentStore",
    "Dialogue",
    "DoneEvent",
    "GenerationOptions",
    "Hit",
    "IndexReport",
    "OneGenConfig",
    "OneGenModel",
    "OneGenSession",
    "OneGenTokens",
    "RetrievalEvent",
    "RetrievalQuery",
    "Retriever",
    "TextSplitter",
    "TokenEvent",
    "Usage",
    "index_paths",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'onegen_integrations' has no attribute {name!r}")
    value = getattr(import_module(f"onegen_integrations.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
