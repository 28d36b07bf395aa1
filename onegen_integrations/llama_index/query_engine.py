"""`OneGenQueryEngine`: answer a question in one pass, retrieving where the model emits `[RQ]`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core import Settings
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import QueryBundle

from onegen_integrations.errors import EmptyTextError
from onegen_integrations.events import DoneEvent, Event, TokenEvent
from onegen_integrations.llama_index.engine_retriever import EngineRetriever
from onegen_integrations.llama_index.index import FromIndex
from onegen_integrations.llama_index.llm_events import model_dict, prompt_messages, reported_as_llm_call
from onegen_integrations.llama_index.streams import iterate_in_thread, run_to_end, turn_metadata
from onegen_integrations.model import OneGenModel


class OneGenQueryEngine(FromIndex, BaseQueryEngine):
    """A query engine where retrieval happens inside generation, over one KV cache.

    The question is fed once; tokens stream; when the model emits `[RQ]`, the hidden state
    there becomes the `QueryBundle.embedding` for the LlamaIndex retriever (so no query is
    embedded separately), the post-processed nodes are inserted as passages, and decoding
    goes on in the same pass. There is no separate synthesis call. The response's `metadata`
    (plain JSON) holds the finish reason, the token usage, and the retrievals under
    `replay.RETRIEVALS_KEY`; a streaming response's fills when the stream ends. Untrained models
    retrieve once at the start of every answer (`retrieval="always"`, the engine's default
    for them).

    Args:
        model: the shared `OneGenModel` (the one that embedded the index).
        retriever: any LlamaIndex retriever, e.g. `index.as_retriever(similarity_top_k=2)`.
        node_postprocessors: applied to each retrieval's nodes before insertion.
        streaming: `query` returns a `StreamingResponse` whose `source_nodes` fill as
            retrievals happen.
        callback_manager: gets the query and its generation as an `LLM` event (default:
            `Settings.callback_manager`), so `TokenCountingHandler` counts it.
        **options: `OneGenSession` options, e.g. `max_new_tokens`, `max_retrievals`,
            `retrieval`, `stop`, `temperature`, `system_prompt`, `seed`.

    Example:
        engine = OneGenQueryEngine.from_index(index, streaming=True, max_new_tokens=64)
        response = engine.query("Who founded the Varenne Institute?")
        response.print_response_stream()
        print(response.source_nodes[0].node.get_content())
    """

    def __init__(
        self,
        model: OneGenModel,
        retriever: BaseRetriever,
        *,
        node_postprocessors: Sequence[BaseNodePostprocessor] = (),
        streaming: bool = False,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> None:
        super().__init__(callback_manager or Settings.callback_manager)
        self.model = model
        self.retriever = retriever
        self.node_postprocessors = list(node_postprocessors)
        self.streaming = streaming
        self.options = options
        model.session(EngineRetriever(retriever), **options)  # fail now on bad options

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        adapter, events = self._start(query_bundle)
        if self.streaming:
            metadata: dict[str, Any] = {}
            return StreamingResponse(
                response_gen=_answer_text(events, metadata), source_nodes=adapter.nodes, metadata=metadata
            )
        done = run_to_end(events)
        return Response(done.text, source_nodes=adapter.nodes, metadata=turn_metadata(done))

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        if not self.streaming:
            return await asyncio.to_thread(self._query, query_bundle)
        adapter, events = self._start(query_bundle)
        metadata: dict[str, Any] = {}
        return AsyncStreamingResponse(
            response_gen=iterate_in_thread(_answer_text(events, metadata)),
            source_nodes=adapter.nodes,
            metadata=metadata,
        )

    def _start(self, query_bundle: QueryBundle) -> tuple[EngineRetriever, Iterator[Event]]:
        """A fresh session and adapter for one question, and the turn's (lazy) events."""
        if not query_bundle.query_str or not query_bundle.query_str.strip():
            raise EmptyTextError("the query is empty: ask a question")
        adapter = EngineRetriever(self.retriever, self.node_postprocessors)
        session = self.model.session(adapter, **self.options)
        system_prompt = self.options.get("system_prompt")
        shown_system = self.model.config.system_prompt if system_prompt is None else system_prompt
        events = reported_as_llm_call(
            session.send(query_bundle.query_str),
            prompt_messages(shown_system, [], query_bundle.query_str),
            self.callback_manager,
            model_dict(self, self.model.name, self.options),
        )
        return adapter, events


def _answer_text(events: Iterator[Event], metadata: dict[str, Any]) -> Iterator[str]:
    """The answer's new text, piece by piece; `metadata` gets the usage at the end."""
    for event in events:
        if isinstance(event, DoneEvent):
            metadata.update(turn_metadata(event))
        elif isinstance(event, TokenEvent):
            yield event.text
