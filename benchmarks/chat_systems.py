"""The three multi-turn RAG chatbots compared, each reduced to `answer(message) -> text`.

Each builder indexes the texts once and returns a `ChatFactory`: every call starts a new
conversation over that index.

- `onegen`: `OneGenChatEngine`, one KV cache for the conversation; `[RQ]` forced at the start
  of each answer, its hidden state searches a LlamaIndex index embedded by the same model.
- `llama_index`: `CondensePlusContextChatEngine` (condense the history and message into a
  standalone question with the LLM, retrieve with MiniLM, answer with the context).
- `langchain`: the history-aware retrieval chain. langchain 1.x no longer ships
  `create_history_aware_retriever` / `create_retrieval_chain` (they moved to
  `langchain-classic`, not installed), so `history_aware_rag_chain` rebuilds the same
  two steps with LCEL, with the classic chains' prompts.

Both peers run the same SmolLM2 through our thin wrappers (`OneGenLLM`, `ChatOneGen`, with
retrieval off) and MiniLM as the retriever. OneGen bans EOS so it writes `new_tokens`
every turn; the peers' wrappers take no logits processor, so their calls may stop earlier
(which favours them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever as LangChainRetriever
from langchain_core.runnables import Runnable, RunnableBranch, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.chat_engine import CondensePlusContextChatEngine
from onegen_evaluation.minilm import MiniLMEncoder

from benchmarks.minilm_adapters import MiniLMEmbedding, MiniLMEmbeddings
from benchmarks.workload import no_eos
from onegen_integrations.langchain import ChatOneGen
from onegen_integrations.llama_index import OneGenChatEngine, OneGenEmbedding, OneGenLLM
from onegen_integrations.model import OneGenModel

ChatSystem = Callable[[str], str]
"""Answers one user message after the conversation so far; returns the answer text."""
ChatFactory = Callable[[], ChatSystem]
"""Starts a new conversation."""

CONTEXTUALIZE_PROMPT = (
    "Given a chat history and the latest user question which might reference context in the "
    "chat history, formulate a standalone question which can be understood without the chat "
    "history. Do NOT answer the question, just reformulate it if needed and otherwise return it as is."
)
ANSWER_PROMPT = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved "
    "context to answer the question. If you don't know the answer, say that you don't know. "
    "Use three sentences maximum and keep the answer concise.\n\n{context}"
)


def onegen_chat(model: OneGenModel, texts: Sequence[str], new_tokens: int) -> ChatFactory:
    """`OneGenChatEngine` over a LlamaIndex index of `texts` embedded by `model` itself."""
    index = VectorStoreIndex.from_documents([LlamaDocument(text=t) for t in texts], embed_model=OneGenEmbedding(model))

    def new_conversation() -> ChatSystem:
        engine = OneGenChatEngine(
            model,
            index.as_retriever(similarity_top_k=1),
            retrieval="always",
            max_new_tokens=new_tokens,
            logits_processor=no_eos(model),
        )
        return lambda message: engine.chat(message).response

    return new_conversation


def llama_index_chat(model: OneGenModel, encoder: MiniLMEncoder, texts: Sequence[str], new_tokens: int) -> ChatFactory:
    """LlamaIndex `CondensePlusContextChatEngine`: SmolLM2 via `OneGenLLM`, MiniLM retrieval."""
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=t) for t in texts], embed_model=MiniLMEmbedding(encoder)
    )
    llm = OneGenLLM(model, max_new_tokens=new_tokens)

    def new_conversation() -> ChatSystem:
        engine = CondensePlusContextChatEngine.from_defaults(retriever=index.as_retriever(similarity_top_k=1), llm=llm)
        return lambda message: engine.chat(message).response

    return new_conversation


def history_aware_rag_chain(llm: BaseChatModel, retriever: LangChainRetriever) -> Runnable:
    """`create_retrieval_chain(create_history_aware_retriever(...), create_stuff_documents_chain(...))` in LCEL.

    Input `{"input", "chat_history"}`; output adds `context` (documents) and `answer`.
    With no history the message goes to the retriever as is; otherwise the LLM first
    rewrites it into a standalone question.
    """
    condense_prompt = ChatPromptTemplate.from_messages(
        [("system", CONTEXTUALIZE_PROMPT), MessagesPlaceholder("chat_history"), ("human", "{input}")]
    )
    answer_prompt = ChatPromptTemplate.from_messages(
        [("system", ANSWER_PROMPT), MessagesPlaceholder("chat_history"), ("human", "{input}")]
    )
    history_aware_retriever = RunnableBranch(
        (lambda x: not x.get("chat_history"), itemgetter("input") | retriever),
        condense_prompt | llm | StrOutputParser() | retriever,
    )

    def stuff(inputs: dict[str, Any]) -> str:
        documents: list[Document] = inputs["context"]
        return "\n\n".join(doc.page_content for doc in documents)

    answer = RunnablePassthrough.assign(context=stuff) | answer_prompt | llm | StrOutputParser()
    return RunnablePassthrough.assign(context=history_aware_retriever).assign(answer=answer)


def langchain_chat(model: OneGenModel, encoder: MiniLMEncoder, texts: Sequence[str], new_tokens: int) -> ChatFactory:
    """The history-aware retrieval chain: SmolLM2 via `ChatOneGen`, MiniLM over an in-memory store."""
    store = InMemoryVectorStore.from_texts(list(texts), MiniLMEmbeddings(encoder))
    chain = history_aware_rag_chain(
        ChatOneGen(onegen_model=model, max_tokens=new_tokens), store.as_retriever(search_kwargs={"k": 1})
    )

    def new_conversation() -> ChatSystem:
        history: list[BaseMessage] = []

        def answer(message: str) -> str:
            text = chain.invoke({"input": message, "chat_history": list(history)})["answer"]
            history.extend([HumanMessage(message), AIMessage(text)])
            return text

        return answer

    return new_conversation
