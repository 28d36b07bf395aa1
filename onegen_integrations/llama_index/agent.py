"""`OneGenAgent`: a LlamaIndex workflow agent that retrieves inside its pass and calls tools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.agent.workflow.base_agent import WORKFLOW_KWARGS
from llama_index.core.agent.workflow.workflow_events import AgentOutput, AgentStream, AgentWorkflowStartEvent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.chat_engine.types import AgentChatResponse
from llama_index.core.indices.vector_store import VectorStoreIndex
from llama_index.core.memory import BaseMemory
from llama_index.core.tools import AsyncBaseTool
from llama_index.core.workflow import Context

from onegen_integrations.llama_index.chat_engine import OneGenChatEngine
from onegen_integrations.llama_index.llm import OneGenLLM
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.llama_index.streams import chat_responses, iterate_in_thread
from onegen_integrations.llama_index.tool_calls import take_offer, tool_selections

DEFAULT_NAME = "onegen"
DEFAULT_DESCRIPTION = "Answers questions from the indexed documents, retrieving while it writes."
CONVERSATION_KEY = "onegen_conversation"
"""The `Context` state key holding the agent's conversation as JSON messages."""


class OneGenAgent(FunctionAgent):
    """A `FunctionAgent` whose every step is one pass of the engine over an index.

    Each step is one turn of a `OneGenChatEngine`: the model writes, retrieves where it
    emits `[RQ]`, and goes on over the same KV cache, which is kept between steps and runs
    while the agent's memory matches it. Given `tools=`, a step may end in calls instead (in
    the model's tool format, `onegen_integrations.tools`); the workflow runs them and the
    next step reads their results over the same cache, so knowledge comes from retrieval in
    the pass and tools are left for actions and live data. `initial_tool_choice` and
    `allow_parallel_tool_calls` work as for `FunctionAgent`; without tools a run is one turn.

    For a conversation, run with one `ctx=Context(agent)` (or one `memory=`) each time; the
    answers put into memory carry their retrievals in `additional_kwargs[RETRIEVALS_KEY]`, so
    an agent given that memory later (a `Context` restored with `Context.from_dict`, in
    another process) feeds each earlier `[RQ]` and its passages back and retrieves on
    follow-ups as this one does. Each `AgentOutput.raw` is the step's `AgentChatResponse`
    (with `source_nodes`, and JSON `metadata`). In an `AgentWorkflow` it may also be the
    knowledge agent other agents hand off to.

    Example:
        agent = OneGenAgent.from_index(index, tools=[order_status], max_new_tokens=64)
        ctx = Context(agent)
        result = await agent.run(user_msg="Who founded the Varenne Institute?", ctx=ctx)
        result = await agent.run(user_msg="Where is order 1042?", ctx=ctx)
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

        Agent and workflow arguments (`tools`, `system_prompt`, `timeout`, ...) go to the
        agent, the rest to `OneGenChatEngine.from_index` (e.g. `similarity_top_k`, `max_new_tokens`).
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
        """Answer the last user message (or tool results) in one pass, streaming `AgentStream` events."""
        scratchpad: list[ChatMessage] = await ctx.store.get(self.scratchpad_key, default=[])
        messages = [*llm_input, *scratchpad]
        first = self.initial_tool_choice is not None and messages[-1].role == "user"
        offer = take_offer(
            {
                "tools": tools,
                "tool_choice": self.initial_tool_choice if first else None,
                "allow_parallel_tool_calls": self.allow_parallel_tool_calls,
            }
        )
        dialogue = to_dialogue(messages)
        if offer:
            own = self._engine.system_prompt
            dialogue = offer.dialogue(dialogue, self._engine.model.config.system_prompt if own is None else own)
        nodes, events = self._engine.start_turn(dialogue, prefix=offer.prefix if offer else "")
        last = None
        async for last in iterate_in_thread(chat_responses(events, offer)):
            if self.streaming:
                ctx.write_event_to_stream(
                    AgentStream(
                        delta=last.delta or "",
                        response=last.message.content or "",
                        tool_calls=tool_selections(last.message, error_on_no_tool_call=False),
                        raw=last.raw,
                        current_agent_name=self.name,
                    )
                )
        assert last is not None
        scratchpad.append(last.message)
        await ctx.store.set(self.scratchpad_key, scratchpad)
        response = AgentChatResponse(response=last.message.content or "", source_nodes=nodes, metadata=last.raw)
        return AgentOutput(
            response=last.message,
            tool_calls=tool_selections(last.message, error_on_no_tool_call=False),
            current_agent_name=self.name,
            raw=response,
        )

    async def finalize(self, ctx: Context, output: AgentOutput, memory: BaseMemory) -> AgentOutput:
        """Put the run's messages into the agent's memory (as `FunctionAgent` does), and the
        conversation into the context's state as JSON (see `_init_context`)."""
        output = await super().finalize(ctx, output, memory)
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
