"""`OneGenAgent`: a LlamaIndex workflow agent whose knowledge step is the one-pass retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.agent.workflow import BaseWorkflowAgent
from llama_index.core.agent.workflow.base_agent import WORKFLOW_KWARGS
from llama_index.core.agent.workflow.workflow_events import (
    AgentOutput,
    AgentStream,
    AgentWorkflowStartEvent,
    ToolCallResult,
)
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.chat_engine.types import AgentChatResponse
from llama_index.core.indices.vector_store import VectorStoreIndex
from llama_index.core.memory import BaseMemory
from llama_index.core.tools import AsyncBaseTool
from llama_index.core.workflow import Context

from onegen_integrations.events import DoneEvent, TokenEvent
from onegen_integrations.llama_index.chat_engine import OneGenChatEngine
from onegen_integrations.llama_index.llm import OneGenLLM
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.llama_index.streams import answer_message, iterate_in_thread, turn_metadata

DEFAULT_NAME = "onegen"
DEFAULT_DESCRIPTION = "Answers questions from the indexed documents, retrieving while it writes."
CONVERSATION_KEY = "onegen_conversation"
"""The `Context` state key holding the agent's conversation as JSON messages."""


class OneGenAgent(BaseWorkflowAgent):
    """A workflow agent (like `FunctionAgent`) that answers from an index in one pass.

    Each step is one turn of a `OneGenChatEngine`: the model writes, retrieves where it
    emits `[RQ]`, and goes on over the same KV cache, which is kept between runs while the
    agent's memory matches it. For a conversation, run with one `ctx=Context(agent)` (or one
    `memory=`) each time; the answer put into memory carries its retrievals in
    `additional_kwargs[RETRIEVALS_KEY]`, so an agent given that memory later (a `Context`
    restored with `Context.from_dict`, in another process) feeds each earlier `[RQ]` and its
    passages back and retrieves on follow-ups as this one does. It calls no tools, so use it
    alone (`await agent.run(...)`, with `AgentStream` events while it writes) or as the
    knowledge agent of an `AgentWorkflow` that other agents hand off to; it cannot hand off
    itself. The final `AgentOutput.raw` is the turn's `AgentChatResponse` (with
    `source_nodes`, and JSON `metadata`).

    A small model (the 135M default) follows ReAct or tool-calling formats poorly, which
    is why this agent does not ask it to; let a stronger LLM's `FunctionAgent` route to it.

    Example:
        agent = OneGenAgent.from_index(index, max_new_tokens=64)
        ctx = Context(agent)
        result = await agent.run(user_msg="Who founded the Varenne Institute?", ctx=ctx)
        result = await agent.run(user_msg="Where was she born?", ctx=ctx)
        print(result.response.content, result.raw.source_nodes)
    """

    _engine: OneGenChatEngine = PrivateAttr()

    def __init__(
        self,
        chat_engine: OneGenChatEngine,
        *,
        name: str = DEFAULT_NAME,
        description: str = DEFAULT_DESCRIPTION,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("tools") or kwargs.get("tool_retriever"):
            raise ValueError(
                "OneGenAgent calls no tools (a small model cannot drive them): give the tools to a "
                "FunctionAgent or ReActAgent and put both in an AgentWorkflow that hands off to this one"
            )
        super().__init__(name=name, description=description, llm=OneGenLLM(chat_engine.model), **kwargs)
        self._engine = chat_engine

    @classmethod
    def from_index(
        cls,
        index: VectorStoreIndex,
        *,
        name: str = DEFAULT_NAME,
        description: str = DEFAULT_DESCRIPTION,
        **kwargs: Any,
    ) -> OneGenAgent:
        """An agent over a `VectorStoreIndex` built with `OneGenEmbedding`.

        Agent and workflow arguments (`system_prompt`, `timeout`, ...) go to the agent, the
        rest to `OneGenChatEngine.from_index` (e.g. `similarity_top_k`, `max_new_tokens`).
        """
        agent_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in cls.model_fields or k in WORKFLOW_KWARGS}
        return cls(OneGenChatEngine.from_index(index, **kwargs), name=name, description=description, **agent_kwargs)

    @property
    def chat_engine(self) -> OneGenChatEngine:
        """The chat engine whose session holds the conversation."""
        return self._engine

    async def take_step(
        self,
        ctx: Context,
        llm_input: list[ChatMessage],
        tools: Sequence[AsyncBaseTool],
        memory: BaseMemory,
    ) -> AgentOutput:
        """Answer the last user message in one pass, streaming `AgentStream` events."""
        nodes, events = self._engine.start_turn(to_dialogue(llm_input))
        text, done = "", None
        async for event in iterate_in_thread(events):
            if isinstance(event, TokenEvent):
                text += event.text
                if self.streaming:
                    ctx.write_event_to_stream(
                        AgentStream(delta=event.text, response=text, current_agent_name=self.name)
                    )
            elif isinstance(event, DoneEvent):
                done = event
        assert done is not None
        response = AgentChatResponse(response=done.text, source_nodes=nodes, metadata=turn_metadata(done))
        return AgentOutput(
            response=answer_message(done),
            current_agent_name=self.name,
            raw=response,
        )

    async def handle_tool_call_results(self, ctx: Context, results: list[ToolCallResult], memory: BaseMemory) -> None:
        """Never reached: this agent's steps request no tool calls."""
        raise RuntimeError("OneGenAgent requested no tool calls, so it has no results to handle")

    async def finalize(self, ctx: Context, output: AgentOutput, memory: BaseMemory) -> AgentOutput:
        """Put the answer into the agent's memory, and the conversation into the context's
        state as JSON (see `_init_context`)."""
        await memory.aput(output.response)
        await ctx.store.set(CONVERSATION_KEY, [m.model_dump(mode="json") for m in await memory.aget_all()])
        return output

    async def _init_context(self, ctx: Context, ev: AgentWorkflowStartEvent) -> None:
        """Set up a run's context; a conversation its memory lost comes back from the JSON copy.

        LlamaIndex carries the memory from one run on a `Context` to the next by serialising
        the context, and drops a memory that fails to serialise with a warning: a
        `ChatMemoryBuffer` holding messages does under pydantic 2.14 (llama-index-core
        0.14.25), so a second run would start with an empty memory. A memory passed as
        `memory=` is the caller's and is left alone.
        """
        held = await ctx.store.get("memory", default=None)
        await super()._init_context(ctx, ev)
        saved = await ctx.store.get(CONVERSATION_KEY, default=None)
        if held is None and ev.get("memory", default=None) is None and saved:
            memory: BaseMemory = await ctx.store.get("memory")
            await memory.aset([ChatMessage.model_validate(m) for m in saved])
