"""`create_app`: the OpenAI-compatible HTTP server over one model and one collection.

Routes: `POST /v1/chat/completions` (streamed or not), `POST /v1/embeddings`, `GET /v1/models`,
`GET /health`, and the chat page at `/`. docs/server.md describes the protocol.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onegen_integrations.conversations import Conversations, Lease
from onegen_integrations.errors import ContextWindowExceededError, InvalidOptionError, OneGenError
from onegen_integrations.events import DoneEvent, Event, RetrievalEvent, TokenEvent
from onegen_integrations.model import OneGenModel
from onegen_integrations.options import GenerationOptions
from onegen_integrations.retrieval import Retriever
from onegen_integrations.server.errors import ApiError
from onegen_integrations.server.schema import (
    FINISH_REASONS,
    ChatCompletionRequest,
    Completion,
    EmbeddingRequest,
    retrieval_json,
    tool_call_json,
    usage_json,
)
from onegen_integrations.server.settings import ServerSettings
from onegen_integrations.server.turns import Put, TurnRunner
from onegen_integrations.tools import CallStream, InvalidToolCall, Parsed, ToolCall, ToolOffer

logger = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static" / "index.html"
CONVERSATION_HEADER = "X-Conversation-ID"


def create_app(model: OneGenModel, retriever: Retriever | None, settings: ServerSettings | None = None) -> FastAPI:
    """A FastAPI app answering chats with `model`, retrieving from `retriever` (None: never).

    Run it with uvicorn (`onegen serve` does): `uvicorn.run(create_app(model, store), port=8000)`.
    """
    settings = settings or ServerSettings()
    generation = dict(settings.generation)
    if retriever is None:
        generation["retrieval"] = "never"
    conversations = Conversations(
        lambda dialogue: dialogue.open(model, retriever, **generation),
        max_conversations=settings.max_conversations,
        max_tokens=settings.max_cached_tokens,
    )
    runner = TurnRunner(concurrency=settings.concurrency, queue=settings.queue)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runner.shutdown()

    app = FastAPI(
        title="OneGen",
        summary="One model that generates and retrieves in one pass, behind OpenAI's API",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    _add_error_handlers(app)

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
            raise ApiError(
                401, "wrong or missing API key: send the header Authorization: Bearer <key>", code="invalid_api_key"
            )

    def served(name: str) -> None:
        if name != settings.model_id:
            raise ApiError(
                404,
                f"model {name!r} is not served here: use {settings.model_id!r} (GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        served(body.model)
        body.refuse_unsupported()
        if len(body.messages) > settings.max_messages:
            raise ApiError(
                400,
                f"{len(body.messages)} messages is more than the {settings.max_messages} a request may hold",
                param="messages",
                code="too_many_messages",
            )
        offer = body.offer()
        dialogue = body.dialogue(offer, model.config.system_prompt)
        options = _checked_options(body.generation_options(offer), settings, retriever is not None)
        conversation_id = body.conversation_id(request.headers.get(CONVERSATION_HEADER))

        def answer(put: Put, stop: threading.Event) -> None:
            lease = conversations.lease(dialogue, conversation_id)
            try:
                put(lease)
                lease.session.reseed(body.seed)
                events = lease.session.send(dialogue.message, **options)
                try:
                    for event in events:
                        put(event)
                        if stop.is_set():
                            break
                finally:
                    events.close()  # the turn keeps what was fed, even when its reader left
            finally:
                conversations.give_back(lease)

        items = runner.stream(answer)
        try:
            lease: Lease = await anext(items)
            first: Event = await anext(items)  # a message that cannot fit fails here, as a status
            done = None if body.stream else [first, *[event async for event in items]][-1]
        except Exception as error:
            await items.aclose()
            raise _api_error(error) from error
        completion = Completion(settings.model_id, lease.conversation_id)
        headers = {CONVERSATION_HEADER: lease.conversation_id}
        if isinstance(done, DoneEvent):
            return JSONResponse(completion.body(done, lease, offer), headers=headers)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = _sse(completion, lease, _prepend(first, items), include_usage, offer)
        headers |= {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)

    @app.post("/v1/embeddings", dependencies=[Depends(authorize)])
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        served(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > settings.max_embedding_inputs:
            raise ApiError(400, f"input must hold 1 to {settings.max_embedding_inputs} texts", param="input")
        embed = model.embed_queries if body.input_type == "query" else model.embed_documents
        try:
            vectors = await runner.call(lambda: embed(texts))
            tokens = sum(model.count_tokens(text) for text in texts)
        except (OneGenError, ValueError) as error:
            raise _api_error(error) from error
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
            for i, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": settings.model_id, "usage": usage}

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": settings.model_id, "object": "model", "created": started, "owned_by": "onegen"}],
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        count = getattr(retriever, "count", None)
        return {
            "status": "ok",
            "model": settings.model_id,
            "backend": model.backend.name,
            "documents": count() if callable(count) else None,
            "conversations": len(conversations),
            "cached_tokens": conversations.cached_tokens,
            "evictions": conversations.evictions,
            "running": runner.running,
            "queued": runner.waiting,
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    return app


def _checked_options(options: dict[str, Any], settings: ServerSettings, retrieves: bool) -> dict[str, Any]:
    """A request's generation overrides, refused with 400 naming the field when out of range."""
    try:
        checked = GenerationOptions().replace(**options)
    except InvalidOptionError as error:
        field = {"max_new_tokens": "max_tokens"}.get(error.option, error.option)
        raise ApiError(400, str(error.renamed(field)), param=field) from error
    except TypeError as error:
        raise ApiError(400, str(error), param="onegen") from error
    if "max_new_tokens" in options and checked.max_new_tokens > settings.max_tokens:
        message = f"max_tokens is {checked.max_new_tokens}; this server allows at most {settings.max_tokens}"
        raise ApiError(400, message, param="max_tokens")
    if checked.retrieval != "never" and "retrieval" in options and not retrieves:
        message = "this server has no collection to retrieve from: use retrieval 'never'"
        raise ApiError(400, message, param="onegen.retrieval")
    return options


async def _prepend(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    yield first
    async for event in rest:
        yield event


async def _sse(
    completion: Completion,
    lease: Lease,
    events: AsyncIterator[Event],
    include_usage: bool,
    offer: ToolOffer | None,
) -> AsyncIterator[str]:
    """A turn's events as OpenAI chunks: role, text deltas, retrievals (`onegen_retrieval`),
    each tool call whole once written (when tools were offered), the finish with usage; an
    error after the start is a chunk of its own."""
    yield _data(completion.chunk({"role": "assistant", "content": ""}))
    calls: list[ToolCall] = []
    splitter = CallStream() if offer else None
    try:
        async for event in events:
            if isinstance(event, RetrievalEvent):
                yield _data(completion.chunk(onegen_retrieval=retrieval_json(event)))
                continue
            for piece in _parsed(event, splitter):
                if not isinstance(piece, ToolCall):
                    text = piece.written() if isinstance(piece, InvalidToolCall) else piece
                    yield _data(completion.chunk({"content": text}))
                elif offer is not None and offer.keeps(calls):
                    calls.append(piece)
                    yield _data(completion.chunk({"tool_calls": [tool_call_json(piece, len(calls) - 1)]}))
            if isinstance(event, TokenEvent):
                continue
            finish = "tool_calls" if calls else _finish(event)
            if include_usage:
                yield _data(completion.chunk(finish=finish))
                yield _data(completion.usage_chunk(event, lease))
            else:
                yield _data(completion.chunk(finish=finish, usage=usage_json(event, lease)))
    except Exception as error:  # the status is sent already: the error goes in the stream
        yield _data(_api_error(error).body())
    yield "data: [DONE]\n\n"


def _parsed(event: Event, splitter: CallStream | None) -> list[Parsed]:
    """The text and calls a token (or the end of the answer) completes; all text without tools."""
    if isinstance(event, TokenEvent):
        return splitter.feed(event.text) if splitter else [event.text]
    return splitter.finish() if splitter else []


def _finish(done: DoneEvent) -> str:
    return FINISH_REASONS[done.finish_reason]


def _data(chunk: dict[str, Any]) -> str:
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector.tolist()


def _api_error(error: BaseException) -> ApiError:
    """What to tell the client about an error raised while answering."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ContextWindowExceededError):
        return ApiError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, ValueError):
        return ApiError(400, str(error))
    if isinstance(error, OneGenError):
        return ApiError(500, str(error))
    logger.error("a request failed", exc_info=error)
    return ApiError(500, f"the server failed to answer ({type(error).__name__}); its log has the details")


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal in OpenAI's error shape, FastAPI's own ones included."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:])
        if first["type"] == "json_invalid":
            message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})"
        elif where:
            message = f"{where}: {first['msg']}"
        else:
            message = f"the body must be a JSON object: {first['msg']}"
        return await api_error(_, ApiError(400, message, param=where or None))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return await api_error(_, ApiError(error.status_code, str(error.detail)))


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if int(declared or 0) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._error()
            return message

        await self.app(scope, counted, send)

    def _error(self) -> ApiError:
        return ApiError(
            413,
            f"the request body is larger than {self.max_bytes} bytes: send fewer or shorter messages",
            code="request_too_large",
        )

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(self._error().body(), status_code=413)
        await response(scope, lambda: _no_body(), send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
