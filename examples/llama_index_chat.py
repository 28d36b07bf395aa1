"""A multi-turn chatbot over the demo corpus: OneGen's chat engine in LlamaIndex.

    python examples/llama_index_chat.py                       # interactive
    python examples/llama_index_chat.py --script onegen_integrations/demo/conversation.txt
    printf 'Who founded the Varenne Institute?\\nWhere was she born?\\n' | python examples/llama_index_chat.py

The whole conversation stays in one KV cache: a follow-up ("where was she born?") is
answered by retrieving with the `[RQ]` hidden state that has read the earlier turns, with
no question-rewriting step.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from onegen_integrations.llama_index import OneGenChatEngine
from onegen_integrations.model import OneGenModel

sys.path.insert(0, str(Path(__file__).parent))
from llama_index_rag import conversation_arguments, demo_index, load_example_model


def messages(script: str | None) -> Iterator[str]:
    """User messages: the script's lines, piped stdin, or what the user types."""
    if script is not None:
        yield from (line.strip() for line in Path(script).read_text().splitlines() if line.strip())
    elif not sys.stdin.isatty():
        yield from (line.strip() for line in sys.stdin if line.strip())
    else:
        print('Type a message ("exit" to stop).')
        while (line := input("you> ").strip()) != "exit":
            if line:
                yield line


def main(argv: list[str] | None = None, model: OneGenModel | None = None) -> None:
    """Run the example; `model` skips loading one (tests pass the one they hold)."""
    args = conversation_arguments(__doc__.splitlines()[0], argv)

    index = demo_index(load_example_model(args.model, model), "llama-index-chat")
    engine = OneGenChatEngine.from_index(index, max_new_tokens=args.max_new_tokens)
    for message in messages(args.script):
        if args.script is not None or not sys.stdin.isatty():
            print(f"you> {message}")
        print("bot> ", end="", flush=True)
        response = engine.stream_chat(message)
        response.print_response_stream()
        print()
        for node in response.source_nodes:
            print(f"  source: {node.node.metadata.get('title', node.node.node_id)}")


if __name__ == "__main__":
    main()
