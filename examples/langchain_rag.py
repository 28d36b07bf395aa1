"""One-pass RAG with LangChain on the default model: the answer streams, retrievals show where they happen.

Indexes the bundled demo corpus into an in-memory Chroma collection with OneGenEmbeddings, then
asks one question through OneGenRAGChain and prints `astream_events` in order: each retrieval
(the documents found with the `[RQ]` hidden state) and the answer tokens around it.

    python examples/langchain_rag.py "Who founded the Varenne Institute?" --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from onegen_integrations.ingest import demo_documents
from onegen_integrations.langchain import ChatOneGen, OneGenEmbeddings, OneGenRAGChain, OneGenRetriever


def build_chain(max_tokens: int) -> OneGenRAGChain:
    """The chat model, embeddings and retriever on one default model, over the demo corpus."""
    llm = ChatOneGen(model="default", max_tokens=max_tokens)
    embeddings = OneGenEmbeddings(onegen_model=llm.load_model())
    documents = demo_documents()
    retriever = OneGenRetriever.from_texts(
        [doc.text for doc in documents],
        embeddings,
        ids=[doc.id for doc in documents],
        metadatas=[{"title": doc.metadata["title"]} for doc in documents],
        k=1,
        collection_name=f"demo-{uuid.uuid4().hex[:8]}",
    )
    return OneGenRAGChain(llm=llm, retriever=retriever)


async def answer(chain: OneGenRAGChain, question: str) -> str:
    """Stream the answer to stdout, retrievals inline; return the answer text."""
    tokens: list[str] = []
    async for event in chain.astream_events(question, version="v2"):
        if event["event"] == "on_retriever_end":
            found = ", ".join(
                f"{doc.metadata['title']} ({doc.metadata['score']:.2f})" for doc in event["data"]["output"]
            )
            print(f"[retrieved: {found}]", flush=True)
        elif event["event"] == "on_chain_stream" and event["name"] == chain.get_name():
            tokens.append(event["data"]["chunk"])
            print(tokens[-1], end="", flush=True)
    print()
    return "".join(tokens)


def main(argv: list[str] | None = None) -> str:
    """Parse the command line, build the chain and answer the question; return the answer."""
    parser = argparse.ArgumentParser(description="One-pass RAG with LangChain over the demo corpus.")
    parser.add_argument("question", nargs="?", default="Who founded the Varenne Institute?")
    parser.add_argument("--max-tokens", type=int, default=64, help="most new tokens in the answer")
    args = parser.parse_args(argv)
    return asyncio.run(answer(build_chain(args.max_tokens), args.question))


if __name__ == "__main__":
    main()
