"""A bounded load test of `onegen serve` on loopback, against a condense-then-retrieve server of the same shape.

Concurrent conversations (16 by default) of 5 turns each stream their turns from the server,
each with its own `X-Conversation-ID`, each sending its whole history every turn as a
stateless OpenAI client does. Their user messages are short scripts over the demo corpus: a
question, then follow-ups that name their subject only by a pronoun ("Where was she born?").

Per turn: the time to the first content delta (TTFT), the whole turn, errors, and how the
server found the conversation (`usage.onegen.conversation`: every follow-up should be
`continued`). Nothing may mix conversations: every chunk must carry the id its request sent,
and each turn must retrieve the same documents and write the same text (greedy decoding) as
the same script did when run alone, one turn at a time, before the load.

The peer answers the same requests the way the condense-then-retrieve pipelines do
(`benchmarks/chat_systems.py`'s LangChain history-aware retrieval chain: the LLM rewrites the
question with the history, all-MiniLM-L6-v2 retrieves, the LLM answers over the history and the
passage) on the same SmolLM2 and backend, statelessly, behind the same OpenAI route, the
same streaming and the same `TurnRunner` concurrency limit. Each system runs alone on the CPUs.

    python -m benchmarks.server_load                                   # 16 x 5 turns, concurrency 4, then 2 and 8
    python -m benchmarks.server_load --conversations 4 --turns 2 --concurrency 4 --out /tmp/bench  # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from benchmarks.report import host, write_results

if TYPE_CHECKING:
    from onegen_integrations.model import OneGenModel

MODEL_ID = "default"
SCRIPTS: dict[str, tuple[str, ...]] = {
    "varenne": (
        "Who founded the Varenne Institute?",
        "Where was she born?",
        "What river runs through that town?",
        "Whom did she marry?",
        "Which bridge did he design?",
    ),
    "brannock": (
        "Who founded the Brannock Line?",
        "When was she born?",
        "What was the company's flagship?",
        "Who commanded it?",
        "Where was he born?",
    ),
    "pell": (
        "Who was Gudrun Pell?",
        "What plane did she fly across the Ostrel Sea?",
        "Who designed it?",
        "Which company did he found?",
        "Where was its factory?",
    ),
    "aurel": (
        "What is the Aurel typewriter?",
        "Who designed it?",
        "Who was her father?",
        "Where was he born?",
        "Which river flows through that city?",
    ),
}
"""Five-turn scripts over the demo corpus; `varenne` extends the demo's own conversation."""
SYSTEMS = ("onegen", "condense_then_retrieve")
START_SECONDS = 300
REQUEST_SECONDS = 300


@dataclass
class Turn:
    """One streamed turn as the client saw it."""

    conversation: str
    script: str
    index: int
    ttft: float | None = None
    seconds: float | None = None
    text: str = ""
    doc_ids: list[str] = field(default_factory=list)
    retrievals: list[dict[str, Any]] = field(default_factory=list)
    reuse: str | None = None
    completion_tokens: int | None = None
    """Tokens of the answer."""
    generated_tokens: int | None = None
    """Tokens the model generated for the turn (the peer's condensed question included)."""
    fed_tokens: int | None = None
    """Tokens the turn put through the model: prompts, passages and generated tokens."""
    foreign_ids: list[str] = field(default_factory=list)
    """Conversation ids in the response other than the one sent (must stay empty)."""
    error: str | None = None

    def record(self) -> dict[str, Any]:
        """This turn for the results file (times in ms precision, without the passages' texts)."""
        fields = asdict(self)
        del fields["retrievals"]
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in fields.items()}


async def stream_turn(
    client: httpx.AsyncClient, conversation: str, script: str, history: list[dict[str, Any]], max_tokens: int
) -> Turn:
    """Send `history` (ending with the new user message) streamed; time and check what comes back."""
    turn = Turn(conversation, script, sum(m["role"] == "user" for m in history))
    body = {"model": MODEL_ID, "messages": history, "stream": True, "max_tokens": max_tokens}
    started = time.perf_counter()
    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"X-Conversation-ID": conversation}
        ) as response:
            if response.status_code != 200:
                turn.error = f"HTTP {response.status_code}: {(await response.aread()).decode()[:200]}"
                return turn
            if response.headers.get("X-Conversation-ID") != conversation:
                turn.foreign_ids.append(str(response.headers.get("X-Conversation-ID")))
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                chunk = json.loads(line.removeprefix("data: "))
                if "error" in chunk:
                    turn.error = f"stream error: {chunk['error'].get('message')}"
                    continue
                if chunk.get("conversation_id") != conversation:
                    turn.foreign_ids.append(str(chunk.get("conversation_id")))
                if retrieval := chunk.get("onegen_retrieval"):
                    turn.retrievals.append(retrieval)
                    turn.doc_ids += [hit["id"] for hit in retrieval["hits"]]
                for choice in chunk.get("choices", []):
                    if text := choice["delta"].get("content"):
                        turn.ttft = turn.ttft or time.perf_counter() - started
                        turn.text += text
                if usage := chunk.get("usage"):
                    turn.completion_tokens = usage.get("completion_tokens")
                    turn.reuse = usage.get("onegen", {}).get("conversation")
                    work = usage.get("onegen") or usage.get("pipeline") or {}
                    turn.fed_tokens = work.get("fed_tokens")
                    turn.generated_tokens = work.get("generated_tokens", turn.completion_tokens)
        turn.seconds = time.perf_counter() - started
    except httpx.HTTPError as error:
        turn.error = f"{type(error).__name__}: {error}"
    return turn


async def run_conversation(
    client: httpx.AsyncClient,
    conversation: str,
    script: str,
    turns: int,
    max_tokens: int,
    done: list[Turn] | None = None,
) -> list[Turn]:
    """One conversation, turn after turn, its whole history sent each time; it stops at an error.
    Each finished turn is appended to `done` (the list returned) as soon as it ends."""
    history: list[dict[str, Any]] = []
    done = [] if done is None else done
    for message in SCRIPTS[script][:turns]:
        history.append({"role": "user", "content": message})
        turn = await stream_turn(client, conversation, script, history, max_tokens)
        done.append(turn)
        if turn.error:
            break
        history.append({"role": "assistant", "content": turn.text, "onegen_retrievals": turn.retrievals})
    return done


async def run_load(
    url: str, conversations: Sequence[tuple[str, str]], turns: int, max_tokens: int, seconds: float
) -> tuple[list[Turn], float, bool]:
    """Every `(conversation id, script)` at once; the turns, the wall seconds, and whether
    the time limit cut the run short (unfinished conversations keep the turns they finished)."""
    limits = httpx.Limits(max_connections=len(conversations) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_SECONDS, limits=limits) as client:
        started = time.perf_counter()
        done: list[list[Turn]] = [[] for _ in conversations]
        tasks = [
            asyncio.create_task(run_conversation(client, cid, script, turns, max_tokens, done[i]))
            for i, (cid, script) in enumerate(conversations)
        ]
        _, unfinished = await asyncio.wait(tasks, timeout=max(seconds, 1))
        wall = time.perf_counter() - started
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
    return [turn for turns_ in done for turn in turns_], wall, bool(unfinished)


async def run_alone(
    url: str, scripts: Sequence[str], turns: int, max_tokens: int, tag: str, seconds: float
) -> dict[str, list[Turn]]:
    """Each script as one conversation, on its own, one turn at a time: the reference answers.
    Scripts not finished within `seconds` are left out."""
    done: dict[str, list[Turn]] = {}
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_SECONDS) as client:
        for script in scripts:
            conversation = run_conversation(client, f"{tag}-{script}", script, turns, max_tokens)
            try:
                done[script] = await asyncio.wait_for(conversation, max(deadline - time.monotonic(), 1))
            except asyncio.TimeoutError:
                break
    return done


def percentile(values: Sequence[float], q: int) -> float | None:
    """The `q`th percentile (inclusive method), in seconds rounded to ms; None without values."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3)


def compare_with_alone(turns: list[Turn], reference: dict[str, list[Turn]]) -> dict[str, Any]:
    """How the loaded turns differ from the same turns run alone.

    A turn is compared only while every earlier turn of its conversation matched (after a
    difference the histories differ, and so may everything after). A differing turn is
    `crossed` when its retrieved documents and text are those of another script's turn, the
    signature of a reply meant for another conversation.
    """
    alone = {(t.script, t.index): t for ts in reference.values() for t in ts}
    conversations: dict[str, list[Turn]] = {}
    for t in turns:
        if t.error is None:
            conversations.setdefault(t.conversation, []).append(t)
    compared, differing, after = 0, [], 0
    for ts in conversations.values():
        for i, t in enumerate(sorted(ts, key=lambda t: t.index)):
            if (t.script, t.index) not in alone:
                continue
            if differing and differing[-1].conversation == t.conversation:
                after += len(ts) - i
                break
            compared += 1
            same = alone[t.script, t.index]
            if t.doc_ids != same.doc_ids or t.text != same.text:
                differing.append(t)
    replies = {(t.script, t.text, tuple(t.doc_ids)) for ts in reference.values() for t in ts}
    return {
        "turns_compared": compared,
        "differ": len(differing),
        "docs_differ": sum(t.doc_ids != alone[t.script, t.index].doc_ids for t in differing),
        "text_differs": sum(t.text != alone[t.script, t.index].text for t in differing),
        "crossed": sum(
            any(script != t.script and (text, docs) == (t.text, tuple(t.doc_ids)) for script, text, docs in replies)
            for t in differing
        ),
        "turns_after_a_difference": after,
        "examples": [
            {
                "conversation": t.conversation,
                "turn": t.index,
                "docs": t.doc_ids,
                "alone_docs": alone[t.script, t.index].doc_ids,
                "text": t.text,
                "alone_text": alone[t.script, t.index].text,
            }
            for t in differing[:5]
        ],
    }


def summarize(turns: list[Turn], expected: int, wall: float, cut_short: bool) -> dict[str, Any]:
    """Latencies, throughput, conversation reuse and conversation ids of a load run."""
    ok = [t for t in turns if t.error is None]
    tokens = sum(t.completion_tokens or 0 for t in ok)
    by_index: dict[int, list[Turn]] = {}
    for t in ok:
        by_index.setdefault(t.index, []).append(t)
    return {
        "turns_expected": expected,
        "turns_ok": len(ok),
        "errors": len(turns) - len(ok),
        "error_messages": sorted({t.error for t in turns if t.error})[:5],
        "not_run": expected - len(turns),
        "cut_short_by_budget": cut_short,
        "wall_seconds": round(wall, 2),
        "turns_per_s": round(len(ok) / wall, 3),
        "completion_tokens_per_s": round(tokens / wall, 2),
        "completion_tokens_per_turn": round(tokens / max(len(ok), 1), 1),
        "generated_tokens_per_turn": round(sum(t.generated_tokens or 0 for t in ok) / max(len(ok), 1), 1),
        "fed_tokens_per_turn": round(sum(t.fed_tokens or 0 for t in ok) / max(len(ok), 1), 1),
        "ttft_p50": percentile([t.ttft for t in ok if t.ttft is not None], 50),
        "ttft_p95": percentile([t.ttft for t in ok if t.ttft is not None], 95),
        "turn_p50": percentile([t.seconds for t in ok if t.seconds is not None], 50),
        "turn_p95": percentile([t.seconds for t in ok if t.seconds is not None], 95),
        "no_text": sum(t.ttft is None for t in ok),
        "ttft_p50_by_turn": {
            i: percentile([t.ttft for t in ts if t.ttft is not None], 50) for i, ts in sorted(by_index.items())
        },
        "turn_p50_by_turn": {
            i: percentile([t.seconds for t in ts if t.seconds is not None], 50) for i, ts in sorted(by_index.items())
        },
        "conversation": dict(Counter(t.reuse for t in ok if t.reuse)),
        "follow_ups_not_continued": (
            sum(t.index > 1 and t.reuse != "continued" for t in ok) if any(t.reuse for t in ok) else None
        ),
        "foreign_conversation_ids": sum(bool(t.foreign_ids) for t in turns),
    }


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server command in its own process, its output in `log`; `url` answers once `/health` does."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{name} did not answer {self.url}/health within {START_SECONDS} s: {log}")

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def cpu_seconds(self) -> float:
        """CPU time the server process has used, all its threads together (Linux `/proc`)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def onegen_server(db: Path, collection: str, log: Path, *flags: str) -> Server:
    """`onegen serve` over a collection on a free loopback port; `flags` are further options."""
    port = free_port()
    command = [sys.executable, "-c", "import sys; from onegen_integrations.cli import main; sys.exit(main())"]
    command += ["serve", "--db", str(db), "--collection", collection, "--port", str(port), *flags]
    return Server("onegen serve", command, port, log)


def peer_server(concurrency: int, log: Path, *, backend: str) -> Server:
    """This module's condense-then-retrieve server (`serve_peer`) in its own process."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.server_load", "--serve-peer", "--port", str(port)]
    command += ["--concurrency", str(concurrency), "--backend", backend]
    return Server("the peer server", command, port, log)


def peer_app(model: OneGenModel, texts: dict[str, str], concurrency: int) -> FastAPI:
    """An OpenAI-shaped streaming chat route over the LangChain history-aware retrieval chain.

    Stateless: every request builds the chain's input from its messages (the last user
    message, the turns before it as history) and answers from scratch, on `concurrency`
    worker threads queued like `onegen serve`'s. The retrieved documents go out as an
    `onegen_retrieval` chunk before the answer's text, as `onegen serve` sends them.
    """
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
    from langchain_core.vectorstores import InMemoryVectorStore
    from onegen_evaluation.minilm import MiniLMEncoder

    from benchmarks.chat_systems import history_aware_rag_chain
    from benchmarks.minilm_adapters import MiniLMEmbeddings
    from onegen_integrations.langchain import ChatOneGen
    from onegen_integrations.server.schema import Completion
    from onegen_integrations.server.turns import TurnRunner

    store = InMemoryVectorStore.from_texts(list(texts.values()), MiniLMEmbeddings(MiniLMEncoder()), ids=list(texts))
    retriever = store.as_retriever(search_kwargs={"k": 1})
    runner = TurnRunner(concurrency=concurrency, queue=64)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": runner.running, "queued": runner.waiting}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        conversation = request.headers.get("X-Conversation-ID", "")
        messages = body["messages"]
        history: list[BaseMessage] = [
            HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"]) for m in messages[:-1]
        ]
        chain = history_aware_rag_chain(ChatOneGen(onegen_model=model, max_tokens=body["max_tokens"]), retriever)

        calls = LLMCalls()

        def answer(put: Callable[[Any], None], stop: Any) -> None:
            question = {"input": messages[-1]["content"], "chat_history": history}
            for part in chain.stream(question, config={"callbacks": [calls]}):
                if "context" in part:
                    put(("docs", [doc.id for doc in part["context"]], [doc.page_content for doc in part["context"]]))
                if "answer" in part:
                    put(("text", part["answer"]))
                if stop.is_set():
                    return

        async def chunks() -> Any:
            completion = Completion(MODEL_ID, conversation)
            yield _data(completion.chunk({"role": "assistant", "content": ""}))
            text = ""
            async for item in runner.stream(answer):
                if item[0] == "docs":
                    hits = [{"id": i, "score": None, "text": t, "metadata": {}} for i, t in zip(item[1], item[2])]
                    yield _data(completion.chunk(onegen_retrieval={"offset": 0, "hits": hits}))
                else:
                    text += item[1]
                    yield _data(completion.chunk({"content": item[1]}))
            usage = {"completion_tokens": calls.answer_tokens, "pipeline": calls.usage()}
            yield _data(completion.chunk(finish="stop", usage=usage))
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream", headers={"X-Conversation-ID": conversation})

    return app


class LLMCalls(BaseCallbackHandler):
    """Counts the tokens of each LLM call of one chain run (ChatOneGen reports its usage)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        usage = getattr(response.generations[0][0], "message", None)
        usage = getattr(usage, "usage_metadata", None) or {}
        self.calls.append((usage.get("input_tokens", 0), usage.get("output_tokens", 0)))

    @property
    def answer_tokens(self) -> int:
        return self.calls[-1][1] if self.calls else 0

    def usage(self) -> dict[str, int]:
        """Calls, tokens generated, and tokens put through the model (a new session each call)."""
        return {
            "llm_calls": len(self.calls),
            "generated_tokens": sum(out for _, out in self.calls),
            "fed_tokens": sum(read + out for read, out in self.calls),
        }


def _data(chunk: dict[str, Any]) -> str:
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def serve_peer(port: int, concurrency: int, backend: str) -> None:
    """Load the model and MiniLM, serve `peer_app` on loopback until terminated."""
    import uvicorn

    from onegen_integrations.ingest import demo_documents
    from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        model = OneGenModel.load(MODEL_ID, backend=backend)
    texts = {str(doc.id): doc.text for doc in demo_documents()}
    uvicorn.run(peer_app(model, texts, concurrency), host="127.0.0.1", port=port, log_level="warning")


def index_demo_corpus(db: Path, backend: str) -> tuple[str, int, str]:
    """Index the demo corpus into a Chroma database at `db`; its collection, its documents, and
    the backend (with the GGUF file on llama.cpp)."""
    from onegen_integrations.ingest import index_demo
    from onegen_integrations.model import OneGenModel
    from onegen_integrations.store import ChromaDocumentStore

    model = OneGenModel.load(MODEL_ID, backend=backend)
    store = ChromaDocumentStore(model, path=db, collection="demo")
    index_demo(store)
    path = getattr(model.backend, "path", None)
    found = (store.count(), model.backend.name + (f" ({path.name})" if path else ""))
    del store, model
    gc.collect()
    return "demo", *found


def measure_system(
    name: str,
    start: Callable[[int, Path], Server],
    concurrencies: Sequence[int],
    args: argparse.Namespace,
    deadline: float,
    folder: Path,
    reference: dict[str, list[Turn]],
) -> dict[str, Any]:
    """The load at each concurrency, each on a fresh server warmed by one request, within `deadline`.

    When `reference` is empty, each script first runs alone, on a server of its own, and fills
    it; every loaded turn is compared with the same turn there."""
    measured: dict[str, Any] = {"load": {}}
    if not reference and time.monotonic() < deadline - 20:
        with serving(name, start, concurrencies[0], folder / f"{name}-alone.log") as server:
            started, left = time.perf_counter(), deadline - time.monotonic()
            tag = f"{name}-alone"
            reference.update(asyncio.run(run_alone(server.url, list(SCRIPTS), args.turns, args.max_tokens, tag, left)))
        alone = [t for ts in reference.values() for t in ts]
        measured["alone"] = {
            "wall_seconds": round(time.perf_counter() - started, 2),
            "errors": sum(t.error is not None for t in alone),
            "ttft_p50": percentile([t.ttft for t in alone if t.ttft is not None], 50),
            "turn_p50": percentile([t.seconds for t in alone if t.seconds is not None], 50),
            "turns": {s: [t.record() for t in ts] for s, ts in reference.items()},
        }
    for concurrency in concurrencies:
        if time.monotonic() > deadline - 20:
            measured["load"][concurrency] = {"skipped": "the time budget ran out"}
            continue
        with serving(name, start, concurrency, folder / f"{name}-{concurrency}.log") as server:
            measured["load"][concurrency] = load_once(name, server, args, deadline, reference)
    return measured


@contextlib.contextmanager
def serving(name: str, start: Callable[[int, Path], Server], concurrency: int, log: Path) -> Iterator[Server]:
    """A fresh server, answered one untimed request (so no timed turn pays for its first one)."""
    started = time.monotonic()
    server = start(concurrency, log)
    try:
        print(f"[server_load] {name}: up in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "stream": True}
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=REQUEST_SECONDS).raise_for_status()
        yield server
    finally:
        server.stop()


def load_once(
    name: str, server: Server, args: argparse.Namespace, deadline: float, reference: dict[str, list[Turn]]
) -> dict[str, Any]:
    """`args.conversations` conversations at once on `server`, the scripts in turn; the summary."""
    scripts = list(SCRIPTS)
    conversations = [(f"{name}-c{i}", scripts[i % len(scripts)]) for i in range(args.conversations)]
    print(f"[server_load] {name}: {len(conversations)} x {args.turns} turns", file=sys.stderr, flush=True)
    cpu, client_cpu, load = server.cpu_seconds(), time.process_time(), os.getloadavg()[0]
    turns, wall, cut = asyncio.run(
        run_load(server.url, conversations, args.turns, args.max_tokens, deadline - time.monotonic())
    )
    result = summarize(turns, len(conversations) * args.turns, wall, cut)
    result["vs_alone"] = compare_with_alone(turns, reference)
    result["server_cpu_seconds_per_turn"] = round((server.cpu_seconds() - cpu) / max(result["turns_ok"], 1), 3)
    result["client_cpu_seconds"] = round(time.process_time() - client_cpu, 2)
    result["load_average_1min_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    result["health_after"] = server.health()
    result["turns"] = [t.record() for t in turns]
    if result["errors"] or result["foreign_conversation_ids"]:
        result["server_log_tail"] = server.log.read_text(errors="replace")[-4000:]
    return result


def table(results: dict[str, Any]) -> str:
    """The load runs as a Markdown table."""
    lines = [
        "| system | concurrency | turns ok / expected | errors | TTFT p50 / p95 s | turn p50 / p95 s | turns/s "
        "| tokens/turn generated / fed | server CPU s/turn | follow-ups not continued | foreign ids | differ from alone / compared | crossed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, system in results["systems"].items():
        for concurrency, r in system["load"].items():
            if "skipped" in r:
                lines.append(f"| {name} | {concurrency} | skipped: {r['skipped']} |||||||||||")
                continue
            not_continued = "n/a" if r["follow_ups_not_continued"] is None else r["follow_ups_not_continued"]
            lines.append(
                f"| {name} | {concurrency} | {r['turns_ok']} / {r['turns_expected']} | {r['errors']} "
                f"| {r['ttft_p50']} / {r['ttft_p95']} | {r['turn_p50']} / {r['turn_p95']} | {r['turns_per_s']} "
                f"| {r['generated_tokens_per_turn']} / {r['fed_tokens_per_turn']} | {r['server_cpu_seconds_per_turn']} | {not_continued} | {r['foreign_conversation_ids']} "
                f"| {r['vs_alone']['differ']} / {r['vs_alone']['turns_compared']} | {r['vs_alone']['crossed']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Index, then load `onegen serve` and the peer in turn; print a table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=16, help="conversations at once (default 16)")
    parser.add_argument(
        "--turns", type=int, default=5, help=f"turns per conversation, at most {len(SCRIPTS['varenne'])} (default 5)"
    )
    parser.add_argument("--max-tokens", type=int, default=48, help="max_tokens of every request (default 48)")
    parser.add_argument(
        "--concurrency",
        default="4,2,8",
        help="server concurrency limits to run, the first also for the peer (default 4,2,8)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=360,
        help="wall-clock seconds for the whole run; later runs are skipped (default 360)",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems to load (default {','.join(SYSTEMS)})",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "llama.cpp"),
        default="auto",
        help="the model's backend in both servers (default auto: llama.cpp on a CPU)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where server_load.json goes")
    parser.add_argument("--serve-peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.serve_peer:
        serve_peer(args.port, concurrencies[0], args.backend)
        return 0
    chosen = [name.strip() for name in args.systems.split(",") if name.strip()]
    if not 1 <= args.turns <= len(SCRIPTS["varenne"]) or args.conversations < 1 or not concurrencies:
        parser.error(f"--turns must be 1 to {len(SCRIPTS['varenne'])}, --conversations and --concurrency at least 1")
    if not chosen or set(chosen) - set(SYSTEMS):
        parser.error(f"--systems must name some of {', '.join(SYSTEMS)}")
    started = time.monotonic()
    deadline = started + args.budget
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        collection, documents, backend = index_demo_corpus(folder / "db", args.backend)
        print(
            f"[server_load] indexed {documents} documents on {backend} in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        servers = {
            "onegen": lambda concurrency, log: onegen_server(
                folder / "db", collection, log, "--concurrency", str(concurrency), "--backend", args.backend
            ),
            "condense_then_retrieve": functools.partial(peer_server, backend=args.backend),
        }
        alone: dict[str, dict[str, list[Turn]]] = {name: {} for name in chosen}
        # Every system at the first concurrency limit, the comparison; then onegen at the others.
        systems = {
            name: measure_system(name, servers[name], concurrencies[:1], args, deadline, folder, alone[name])
            for name in chosen
        }
        if "onegen" in chosen and len(concurrencies) > 1:
            more = measure_system(
                "onegen", servers["onegen"], concurrencies[1:], args, deadline, folder, alone["onegen"]
            )
            systems["onegen"]["load"] |= more["load"]
    results = {
        "conversations": args.conversations,
        "turns": args.turns,
        "max_tokens": args.max_tokens,
        "scripts": {name: list(script[: args.turns]) for name, script in SCRIPTS.items()},
        "backend": backend,
        "documents": documents,
        "budget_seconds": args.budget,
        "systems": systems,
        "machine": host("llama-cpp-python", "fastapi", "uvicorn", "httpx"),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    write_results(results, args.out, "server_load.json", table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
