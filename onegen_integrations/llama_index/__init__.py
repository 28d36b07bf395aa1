"""OneGen for LlamaIndex: LLM, embedding model, one-pass query and chat engines, an agent.

Install with `pip install onegen-integrations[llama-index]`. One `OneGenModel` serves them
all: `OneGenLLM(model)` and `OneGenEmbedding(model)` share its weights.
"""

from onegen_integrations.llama_index.agent import OneGenAgent
from onegen_integrations.llama_index.chat_engine import OneGenChatEngine
from onegen_integrations.llama_index.embedding import OneGenEmbedding
from onegen_integrations.llama_index.engine_retriever import EngineRetriever
from onegen_integrations.llama_index.index import index_model
from onegen_integrations.llama_index.llm import OneGenLLM
from onegen_integrations.llama_index.query_engine import OneGenQueryEngine

__all__ = [
    "EngineRetriever",
    "OneGenAgent",
    "OneGenChatEngine",
    "OneGenEmbedding",
    "OneGenLLM",
    "OneGenQueryEngine",
    "index_model",
]
