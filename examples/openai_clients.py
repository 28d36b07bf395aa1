"""LangChain's ChatOpenAI and LlamaIndex's OpenAILike, unchanged, chatting with `onegen serve`.

Index the demo corpus and start the server, then run the example against it:

    onegen index onegen_integrations/demo/corpus.jsonl --db demo-db --collection demo
    onegen serve --db demo-db --collection demo
    python examples/openai_clients.py --url http://127.0.0.1:8000/v1

Each client plays the bundled conversation (`onegen_integrations/demo/conversation.txt`), keeping
its own history and sending it whole every turn, as any OpenAI client does. The `X-Conversation-ID`
header names the conversation, so the server continues the KV cache it kept instead of reading the
history again; the follow-ups ("Where was she born?") retrieve with the `[RQ]` hidden state that
has read the earlier turns. Last, ChatOpenAI streams an answer token by token.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

CONVERSATION = Path(__file__).resolve().parents[1] / "onegen_integrations" / "demo" / "conversation.txt"


def conversation_headers(client: str) -> dict[str, str]:
    """A fresh conversation id: the server keeps one KV cache per id."""
    return {"X-Conversation-ID": f"{client}-{uuid.uuid4().hex[:8]}"}


def langchain_chat(url: str, api_key: str, questions: list[str]) -> list[str]:
    """Ask `questions` in one conversation with ChatOpenAI; print and return the answers."""
    llm = ChatOpenAI(
        model="default", base_url=url, api_key=api_key, max_retries=0, default_headers=conversation_headers("langchain")
    )
    history: list[BaseMessage] = []
    for question in questions:
        history.append(HumanMessage(question))
        reply = llm.invoke(history)
        history.append(reply)
        cached = (reply.usage_metadata or {}).get("input_token_details", {}).get("cache_read", 0)
        print(f"> {question}\n{reply.text.strip()}  [{cached} tokens from the server's cache]\n")
    return [message.text for message in history[1::2]]


def llama_index_chat(url: str, api_key: str, questions: list[str]) -> list[str]:
    """Ask `questions` in one conversation with OpenAILike; print the answers and the documents
    each one retrieved (the `onegen_retrievals` field the server adds to the message)."""
    llm = OpenAILike(
        model="default",
        api_base=url,
        api_key=api_key,
        is_chat_model=True,
        context_window=8192,
        temperature=0.0,  # OpenAILike's default is 0.1, which the server would sample at
        max_retries=0,
        default_headers=conversation_headers("llama-index"),
    )
    history: list[ChatMessage] = []
    for question in questions:
        history.append(ChatMessage(role="user", content=question))
        response = llm.chat(history)
        history.append(response.message)
        retrievals = response.raw.choices[0].message.model_dump().get("onegen_retrievals", [])
        found = ", ".join(hit["id"] for retrieval in retrievals for hit in retrieval["hits"]) or "nothing"
        print(f"> {question}\n{(response.message.content or '').strip()}  [retrieved: {found}]\n")
    return [message.content or "" for message in history[1::2]]


def langchain_stream(url: str, api_key: str, question: str) -> str:
    """Stream one answer with ChatOpenAI, printing tokens as they arrive; return the answer."""
    llm = ChatOpenAI(
        model="default", base_url=url, api_key=api_key, max_retries=0, default_headers=conversation_headers("stream")
    )
    print(f"> {question}")
    tokens = []
    for chunk in llm.stream([HumanMessage(question)]):
        tokens.append(chunk.text)
        print(chunk.text, end="", flush=True)
    print("\n")
    return "".join(tokens)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1", help="the server's OpenAI base URL")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("ONEGEN_API_KEY", "none"),
        help="the server's --api-key (default: $ONEGEN_API_KEY; the clients need some value even when the server has none)",
    )
    args = parser.parse_args(argv)
    questions = [line.strip() for line in CONVERSATION.read_text().splitlines() if line.strip()]

    print("== LangChain ChatOpenAI\n")
    langchain_chat(args.url, args.api_key, questions)
    print("== LlamaIndex OpenAILike\n")
    llama_index_chat(args.url, args.api_key, questions)
    print("== ChatOpenAI, streamed\n")
    langchain_stream(args.url, args.api_key, questions[0])


if __name__ == "__main__":
    main()
