"""A multi-turn chatbot with LangChain on the default model: follow-ups retrieve from the cached dialogue.

Plays the bundled scripted conversation (`onegen_integrations/demo/conversation.txt`) through
OneGenChatChain under one session id. Each turn is one pass over the session's KV cache: the
follow-ups ("Where was she born?") are not rewritten into standalone questions; the `[RQ]`
hidden state already attends to the earlier turns.

    python examples/langchain_chatbot.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig

from onegen_integrations.langchain import OneGenChatChain

sys.path.insert(0, str(Path(__file__).parent))
from langchain_rag import build_chain

CONVERSATION = Path(__file__).resolve().parents[1] / "onegen_integrations" / "demo" / "conversation.txt"


class PrintRetrievals(BaseCallbackHandler):
    """Prints the titles of the documents each retrieval inserts."""

    def on_retriever_end(self, documents: list[Document], **kwargs: Any) -> None:
        print(f"[retrieved: {', '.join(doc.metadata['title'] for doc in documents)}]", flush=True)


def main(argv: list[str] | None = None) -> list[str]:
    """Play the scripted conversation under one session id; return the answers."""
    parser = argparse.ArgumentParser(description="A multi-turn OneGen chatbot with LangChain.")
    parser.add_argument("--max-tokens", type=int, default=64, help="most new tokens per answer")
    args = parser.parse_args(argv)
    rag = build_chain(args.max_tokens)
    chat = OneGenChatChain(llm=rag.llm, retriever=rag.retriever)
    config: RunnableConfig = {"configurable": {"session_id": "demo"}, "callbacks": [PrintRetrievals()]}
    answers = []
    for question in filter(str.strip, CONVERSATION.read_text().splitlines()):
        print(f"> {question}")
        tokens = []
        for token in chat.stream(question, config):
            tokens.append(token)
            print(token, end="", flush=True)
        print("\n")
        answers.append("".join(tokens))
    return answers


if __name__ == "__main__":
    main()
