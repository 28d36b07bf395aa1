"""`OneGenAgent`: a LlamaIndex workflow agent whose knowledge step is the one-pass retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.agent.workflow import BaseWorkflowAgent
from llama_index.core.agent.workflow.base_agent import WORKFLOW_KWARGS
from llama_index.core.agent.workflow.workflow_events import AgentOutput, AgentStream, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.chat_engine.types import AgentChatResponse
from llama_index.core.indices.vector_store import VectorStoreIndex
from llama_index.core.memory import BaseMemory
from llama_index.core.tools import AsyncBaseTool
from llama_index.core.workflow import Context

from onegen_integrations.events import DoneEvent, TokenEvent
from onegen_integrations.llama_index.chat_engine import OneGenChatEngine
from onegen_integrations.llama_index.dialogue import Dialogue
from onegen_integrations.llama_index.llm import OneGenLLM
from onegen_integrations.llama_index.streams import iterate_in_thread, turn_metadata

DEFAULT_NAME = "onegen"
DEFAULT_DESCRIPTION = "Answers questions from the indexed documents, retrieving while it writes."


class OneGenAgent(BaseWorkflowAgent):
    """A workflow agent (like `FunctionAgent`) that answers from an index in one pass.

    Each step is one turn of a `OneGenChatEngine`: the model writes, retrieves where it
    emits `[RQ]`, and goes on over the same KV cache, which is kept between runs while the
    agent's memory matches it (pass the same `memory=` to each run for a conversation). It calls no tools, so use it alone (`await agent.run(...)`,
    with `AgentStream` events while it writes) or as the knowledge agent of an
    `AgentWorkflow` that other agents hand off to; it cannot hand off itself. The final
    `AgentOutput.raw` is the turn's `AgentChatResponse` (with `source_nodes`).

    A small model (the 135M default) follows ReAct or tool-calling formats poorly, which
    is why this agent does not ask it to; let a stronger LLM's `FunctionAgent` route to it.

    Example:
        agent = OneGenAgent.from_index(index, max_new_tokens=64)
        memory = ChatMemoryBuffer.from_defaults()
        result = await agent.run(user_msg="Who founded the Varenne Institute?", memory=memory)
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
        nodes, events = self._engine.start_turn(Dialogue.from_messages(llm_input))
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
            response=ChatMessage(role=MessageRole.ASSISTANT, content=done.text),
            current_agent_name=self.name,
            raw=response,
        )

    async def handle_tool_call_results(self, ctx: Context, results: list[ToolCallResult], memory: BaseMemory) -> None:
        """Never reached: this agent's steps request no tool calls."""
        raise RuntimeError("OneGenAgent requested no tool calls, so it has no results to handle")

    async def finalize(self, ctx: Context, output: AgentOutput, memory: BaseMemory) -> AgentOutput:
        """Put the answer into the agent's memory."""
        await memory.aput(output.response)
        return output
