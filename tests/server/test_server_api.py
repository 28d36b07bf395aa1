"""`onegen serve` over HTTP: a real server process on a loopback port, the default model, the demo corpus."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import httpx
import numpy as np

from onegen_integrations.model import OneGenModel
from tests.server.conftest import LIMITED_KEY
from tests.servers import OneGenServer

QUESTION = "Who founded the Varenne Institute?"
FOLLOW_UP = "Where was she born?"


def chat(client: httpx.Client, messages: list[dict], conversation: str | None = None, **fields: Any) -> httpx.Response:
    headers = {"X-Conversation-ID": conversation} if conversation else {}
    return client.post("/v1/chat/completions", json={"model": "default", "messages": messages, **fields}, headers=headers)


def streamed(client: httpx.Client, messages: list[dict], conversation: str | None = None, **fields: Any) -> list[dict]:
    """The chunks of a streamed answer, in order (`[DONE]` checked and left out)."""
    headers = {"X-Conversation-ID": conversation} if conversation else {}
    body = {"model": "default", "messages": messages, "stream": True, **fields}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(body: dict) -> dict:
    """The answer of a response, as a stateless client sends it back (text only)."""
    return {"role": "assistant", "content": body["choices"][0]["message"]["content"]}


def hit_ids(body: dict) -> list[str]:
    return [hit["id"] for r in body["choices"][0]["message"]["onegen_retrievals"] for hit in r["hits"]]


def test_streamed_and_whole_answers_are_equal(server: OneGenServer) -> None:
    with server.client() as client:
        whole = chat(client, [user(QUESTION)]).json()
        chunks = streamed(client, [user(QUESTION)])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"] and "Marchetti" in text
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    retrievals = [c["onegen_retrieval"] for c in chunks if "onegen_retrieval" in c]
    assert retrievals == whole["choices"][0]["message"]["onegen_retrievals"]
    assert [h["id"] for h in retrievals[0]["hits"]] == ["varenne-institute"]
    first_text = next(i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("content"))
    assert chunks.index(next(c for c in chunks if "onegen_retrieval" in c)) < first_text  # sources before the words
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


def test_with_include_usage_the_usage_comes_in_a_last_chunk_without_choices(server: OneGenServer) -> None:
    with server.client() as client:
        chunks = streamed(client, [user(QUESTION)], stream_options={"include_usage": True})
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert "usage" not in chunks[-2] and chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_a_seed_repeats_a_sampled_answer(server: OneGenServer) -> None:
    sampled = {"temperature": 1.0, "max_tokens": 16, "onegen": {"retrieval": "never"}}
    with server.client() as client:
        answers = [chat(client, [user("Tell me a story about a ship.")], seed=seed, **sampled).json() for seed in (3, 3, 4)]
    texts = [a["choices"][0]["message"]["content"] for a in answers]
    assert texts[0] == texts[1] != texts[2]


def test_a_follow_up_on_a_cached_conversation_feeds_only_its_own_tokens(server: OneGenServer) -> None:
    with server.client() as client:
        first = chat(client, [user(QUESTION)], "follow-up").json()
        history = [user(QUESTION), assistant(first), user(FOLLOW_UP)]
        cached = chat(client, history, "follow-up").json()
        rebuilt = chat(client, history, "follow-up-elsewhere").json()
    assert first["usage"]["onegen"]["conversation"] == "new"
    assert cached["usage"]["onegen"]["conversation"] == "continued"
    assert rebuilt["usage"]["onegen"]["conversation"] == "rebuilt"
    assert hit_ids(cached) == hit_ids(rebuilt) == ["odile-marchetti"]
    assert cached["choices"][0]["message"]["content"] == rebuilt["choices"][0]["message"]["content"]
    fed, usage = cached["usage"]["onegen"], cached["usage"]
    # What the first turn holds is cached; this turn feeds its message, its passage and its answer.
    assert usage["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["onegen"]["fed_tokens"]
    assert fed["fed_tokens"] <= fed["new_prompt_tokens"] + fed["inserted_tokens"] + usage["completion_tokens"] + 1
    assert rebuilt["usage"]["onegen"]["fed_tokens"] >= fed["fed_tokens"] + first["usage"]["onegen"]["fed_tokens"] - 2


def test_without_an_id_the_history_finds_its_cached_conversation(server: OneGenServer) -> None:
    with server.client() as client:
        first = chat(client, [user("Where is the Varenne Institute?")])
        again = chat(client, [user("Where is the Varenne Institute?"), assistant(first.json()), user("Who founded it?")])
    assert again.json()["conversation_id"] == first.json()["conversation_id"] == first.headers["X-Conversation-ID"]
    assert again.json()["usage"]["onegen"]["conversation"] == "continued"


def test_an_edited_history_rebuilds_once(server: OneGenServer) -> None:
    with server.client() as client:
        first = chat(client, [user(QUESTION)], "edited").json()
        edited = [user(QUESTION), {"role": "assistant", "content": "It was Odile Marchetti."}, user(FOLLOW_UP)]
        rebuilt = chat(client, edited, "edited").json()
        then = chat(client, [*edited, assistant(rebuilt), user("What river runs through that town?")], "edited").json()
    assert first["usage"]["onegen"]["conversation"] == "new"
    assert rebuilt["usage"]["onegen"]["conversation"] == "rebuilt"
    assert then["usage"]["onegen"]["conversation"] == "continued"
    assert hit_ids(rebuilt) == ["odile-marchetti"] and hit_ids(then) == ["selbrook"]


def test_an_answer_sent_back_with_its_retrievals_replays_them(server: OneGenServer) -> None:
    with server.client() as client:
        first = chat(client, [user(QUESTION)]).json()
        message = first["choices"][0]["message"]
        replayed = chat(client, [user(QUESTION), message, user(FOLLOW_UP)], "replay-elsewhere").json()
    assert replayed["usage"]["onegen"]["conversation"] == "rebuilt"
    assert hit_ids(replayed) == ["odile-marchetti"]


def test_evicted_conversations_are_rebuilt_and_answer_the_same(limited: OneGenServer, server: OneGenServer) -> None:
    with limited.client() as client:
        firsts = {name: chat(client, [user(q)], name).json() for name, q in (("a", QUESTION), ("b", "Where is Selbrook?"), ("c", "What is the RV Petrel?"))}
        health = client.get("/health").json()
        follow = chat(client, [user(QUESTION), assistant(firsts["a"]), user(FOLLOW_UP)], "a").json()
    assert health["conversations"] == 2 and health["evictions"] >= 1
    assert follow["usage"]["onegen"]["conversation"] == "rebuilt"
    with server.client() as client:
        reference = chat(client, [user(QUESTION), assistant(firsts["a"]), user(FOLLOW_UP)], "a-reference").json()
    assert follow["choices"][0]["message"]["content"] == reference["choices"][0]["message"]["content"]
    assert hit_ids(follow) == hit_ids(reference) == ["odile-marchetti"]


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    return error


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(limited: OneGenServer) -> None:
    with limited.client() as client:
        post = lambda body, **kw: client.post("/v1/chat/completions", json=body, **kw)  # noqa: E731
        ok = {"model": "default", "messages": [user(QUESTION)], "max_tokens": 16}
        assert "JSON" in error_of(client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}), 400)["message"]
        assert error_of(post({**ok, "model": "gpt-4o"}), 404)["code"] == "model_not_found"
        assert error_of(post({**ok, "messages": []}), 400)["param"] == "messages"
        assert "user" in error_of(post({**ok, "messages": [user("hi"), {"role": "assistant", "content": "hello"}]}), 400)["message"]
        assert error_of(post({**ok, "messages": [user(" ")]}), 400)["type"] == "invalid_request_error"
        assert error_of(post({**ok, "messages": [user("a"), assistant({"choices": [{"message": {"content": "b"}}]})] * 4 + [user("c")]}), 400)["code"] == "too_many_messages"
        assert error_of(post({**ok, "messages": [user("word " * 5000)]}), 413)["code"] == "request_too_large"
        assert error_of(post({**ok, "max_tokens": 65}), 400)["param"] == "max_tokens"
        assert error_of(post({**ok, "temperature": -1}), 400)["param"] == "temperature"
        assert error_of(post({**ok, "onegen": {"k": 0}}), 400)["param"] == "k"
        assert error_of(post({**ok, "onegen": {"top_n": 3}}), 400)["param"] == "onegen"
        assert error_of(post({**ok, "n": 2}), 400)["param"] == "n"
        assert error_of(post({**ok, "seed": 2**64}), 400)["param"] == "seed"
        assert error_of(post({**ok, "tools": [{"type": "function", "function": {"name": "a b"}}]}), 400)["param"] == "tools"
        assert error_of(post({**ok, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "g"}), 400)["param"] == "tool_choice"
        assert error_of(post({**ok, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), 400)["param"] == "messages.0.content"
        assert error_of(client.post("/v1/chat/completions", json=[1, 2]), 400)["type"] == "invalid_request_error"
        assert error_of(client.get("/v1/nowhere"), 404)["type"] == "not_found_error"
        assert chat(client, [user(QUESTION)], max_tokens=16).status_code == 200
    with httpx.Client(base_url=limited.url, timeout=60) as anonymous:
        assert error_of(anonymous.post("/v1/chat/completions", json=ok), 401)["code"] == "invalid_api_key"
        wrong = anonymous.post("/v1/chat/completions", json=ok, headers={"Authorization": "Bearer nope"})
        assert error_of(wrong, 401)["type"] == "authentication_error"
        assert anonymous.get("/health").status_code == 200 and anonymous.get("/").status_code == 200
        assert anonymous.get("/v1/models", headers={"Authorization": f"Bearer {LIMITED_KEY}"}).json()["data"][0]["id"] == "default"


def test_a_message_longer_than_the_context_window_is_refused(server: OneGenServer) -> None:
    with server.client() as client:
        response = chat(client, [user("lighthouse keeper " * 6000)])
        assert error_of(response, 400)["code"] == "context_length_exceeded"
        streaming = chat(client, [user("lighthouse keeper " * 6000)], stream=True)
        assert error_of(streaming, 400)["code"] == "context_length_exceeded"
        assert chat(client, [user(QUESTION)]).status_code == 200


def test_a_full_queue_is_refused_with_503(limited: OneGenServer) -> None:
    """Concurrency 1 and a queue of 1: of six requests at once, one runs, one waits, the rest are refused."""
    start = threading.Barrier(6)
    statuses: list[httpx.Response] = []

    def ask() -> None:
        with limited.client() as client:
            start.wait()
            statuses.append(chat(client, [user("Tell me about the Varenne Institute and its ship.")], max_tokens=64))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    refused = [r for r in statuses if r.status_code == 503]
    assert len(statuses) == 6 and len(refused) >= 1 and sum(r.status_code == 200 for r in statuses) >= 2
    assert all(error_of(r, 503)["code"] == "queue_full" and r.headers["Retry-After"] == "1" for r in refused)


def test_a_client_that_disconnects_mid_stream_frees_its_turn(limited: OneGenServer) -> None:
    body = {"model": "default", "messages": [user("Tell me everything about the Varenne Institute.")], "max_tokens": 64, "stream": True}
    with limited.client() as client:
        with client.stream("POST", "/v1/chat/completions", json=body, headers={"X-Conversation-ID": "gone"}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        # The conversation is consistent: asked again, it is rebuilt and answered in full.
        again = chat(client, body["messages"], "gone", max_tokens=64)
        assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"]
        health = client.get("/health").json()
    assert health["running"] == 0 and health["queued"] == 0


def test_embeddings_are_the_models_document_and_query_vectors(server: OneGenServer, default_model: OneGenModel) -> None:
    texts = ["The Varenne Institute studies marine chemistry.", "Who founded it?"]
    with server.client() as client:
        documents = client.post("/v1/embeddings", json={"model": "default", "input": texts}).json()
        query = client.post("/v1/embeddings", json={"model": "default", "input": texts[1], "input_type": "query"}).json()
        packed = client.post("/v1/embeddings", json={"model": "default", "input": texts, "encoding_format": "base64"}).json()
        assert error_of(client.post("/v1/embeddings", json={"model": "default", "input": [""]}), 400)
        assert error_of(client.post("/v1/embeddings", json={"model": "default", "input": []}), 400)["param"] == "input"
    # The server runs on torch; `default_model` may be on llama.cpp (bf16): equal up to its rounding.
    vectors = np.array([d["embedding"] for d in documents["data"]])
    assert np.all((vectors * default_model.embed_documents(texts)).sum(axis=1) > 0.999)
    assert np.dot(query["data"][0]["embedding"], default_model.embed_queries([texts[1]])[0]) > 0.999
    assert np.dot(query["data"][0]["embedding"], vectors[1]) < 0.99  # [RQ] and [RD] read differently
    unpacked = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in packed["data"]]
    np.testing.assert_allclose(unpacked, vectors, atol=1e-6)
    assert documents["usage"]["prompt_tokens"] == sum(default_model.count_tokens(t) for t in texts)


def test_models_and_health_describe_the_server(server: OneGenServer) -> None:
    with server.client() as client:
        models = client.get("/v1/models").json()
        health = client.get("/health").json()
    assert [m["id"] for m in models["data"]] == ["default"]
    assert health["status"] == "ok" and health["documents"] == 43 and health["backend"] in ("torch", "llama.cpp")


def test_on_llama_cpp_a_conversation_continues_and_retrieves_each_turn(llama_server: OneGenServer) -> None:
    gold = [
        ("Who founded the Varenne Institute?", "varenne-institute"),
        ("Where was she born?", "odile-marchetti"),
        ("What river runs through that town?", "selbrook"),
    ]
    history: list[dict] = []
    reuse, found = [], []
    with llama_server.client() as client:
        for message, _ in gold:
            history.append(user(message))
            body = chat(client, history, "llama").json()
            history.append(assistant(body))
            reuse.append(body["usage"]["onegen"]["conversation"])
            found.append(hit_ids(body))
        assert client.get("/health").json()["backend"] == "llama.cpp"
    assert reuse == ["new", "continued", "continued"]
    assert found == [[doc] for _, doc in gold]
