"""OneGen for LangChain: chat model, embeddings, retriever, and one-pass RAG and chat chains.

Install with `pip install onegen-integrations[langchain]`.
"""

from onegen_integrations.langchain.chains.chat import OneGenChatChain
from onegen_integrations.langchain.chains.rag import OneGenRAGChain
from onegen_integrations.langchain.chat_models.onegen import ChatOneGen
from onegen_integrations.langchain.embeddings.onegen import OneGenEmbeddings
from onegen_integrations.langchain.retrievers.onegen import OneGenRetriever

__all__ = [
    "ChatOneGen",
    "OneGenChatChain",
    "OneGenEmbeddings",
    "OneGenRAGChain",
    "OneGenRetriever",
]
