"""OneGen for the RAG frameworks people use: one LLM that generates and retrieves in one pass.

The names below are the public core; framework adapters live in `onegen_integrations.llama_index`
and `onegen_integrations.langchain` (each behind its extra).
"""

from onegen_integrations.config import OneGenConfig, OneGenTokens
from onegen_integrations.events import DoneEvent, RetrievalEvent, TokenEvent, Usage
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Hit, RetrievalQuery, Retriever
from onegen_integrations.session import GenerationOptions, OneGenSession
from onegen_integrations.splitter import TextSplitter
from onegen_integrations.store import ChromaDocumentStore

__all__ = [
    "ChromaDocumentStore",
    "DoneEvent",
    "GenerationOptions",
    "Hit",
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
]
