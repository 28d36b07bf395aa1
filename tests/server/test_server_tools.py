"""Tool calls through `onegen serve`: OpenAI's `tools`, `tool_choice`, `tool_calls` and `tool`
messages over HTTP, on a tool-trained model (`$ONEGEN_TOOL_MODEL`; skipped without one)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from onegen_integrations.ingest import index_demo
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import ChromaDocumentStore
from tests.conftest import TOOL_MODEL_VARIABLE
from tests.server.conftest import BACKEND, COLLECTION
from tests.server.test_server_api import chat, streamed, user
from tests.servers import OneGenServer

pytestmark = pytest.mark.default_model


@pytest.fixture(scope="module")
def server(tool_model: OneGenModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneGenServer]:
    """`onegen serve` on the tool-trained model, over the demo corpus it embedded."""
    db = tmp_path_factory.mktemp("tool-db")
    index_demo(ChromaDocumentStore(tool_model, path=db, collection=COLLECTION))
    flags = ("--model", os.environ[TOOL_MODEL_VARIABLE], "--served-model-name", "default", *BACKEND)
    served = OneGenServer(db, COLLECTION, *flags, log=tmp_path_factory.mktemp("serve-tools") / "server.log")
    yield served
    served.stop()

ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_parcel",
        "description": "Where a parcel is now, by its tracking code.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
}
REQUEST = "Where is parcel ZX-4410 right now?"


def _calls(body: dict) -> list[tuple[str, dict]]:
    message = body["choices"][0]["message"]
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls", [])]


def test_a_named_tool_choice_returns_openai_tool_calls(server: OneGenServer) -> None:
    forced = {"type": "function", "function": {"name": "get_parcel"}}
    with server.client() as client:
        body = chat(client, [user(REQUEST)], tools=[ORDER_TOOL], tool_choice=forced, max_tokens=48).json()
        chunks = streamed(client, [user(REQUEST)], tools=[ORDER_TOOL], tool_choice=forced, max_tokens=48)
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"]["content"] is None
    assert _calls(body) == [("get_parcel", {"code": "ZX-4410"})]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "<tool_call>" not in "".join(d.get("content") or "" for d in deltas)
    streamed_calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in streamed_calls] == [
        (0, "get_parcel", {"code": "ZX-4410"})
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_result_continues_the_cached_conversation_and_is_answered(server: OneGenServer) -> None:
    forced = {"type": "function", "function": {"name": "get_parcel"}}
    with server.client() as client:
        first = chat(client, [user(REQUEST)], "parcel", tools=[ORDER_TOOL], tool_choice=forced, max_tokens=48).json()
        call = first["choices"][0]["message"]["tool_calls"][0]
        history = [
            user(REQUEST),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"city": "Lyon", "status": "in transit"}'},
        ]
        answer = chat(client, history, "parcel", tools=[ORDER_TOOL], max_tokens=48).json()
    assert answer["usage"]["onegen"]["conversation"] == "continued"
    assert "tool_calls" not in answer["choices"][0]["message"]
    assert "Lyon" in answer["choices"][0]["message"]["content"]


def test_tool_choice_none_offers_no_tools(server: OneGenServer) -> None:
    with server.client() as client:
        offered = chat(client, [user("Hello!")], tools=[ORDER_TOOL], max_tokens=24).json()
        hidden = chat(client, [user("Hello!")], tools=[ORDER_TOOL], tool_choice="none", max_tokens=24).json()
        plain = chat(client, [user("Hello!")], max_tokens=24).json()
    assert _calls(offered) == _calls(hidden) == []
    assert hidden["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert offered["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]  # the schema is in the prompt
