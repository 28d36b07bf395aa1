"""`OneGenRAGChain`: question in, answer out, retrieving inside generation in one pass."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    MessageLikeRepresentation,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import AddableDict
from pydantic import ConfigDict, model_validator
from typing_extensions import NotRequired, TypedDict

from onegen_integrations.dialogue import Dialogue
from onegen_integrations.errors import EmptyTextError
from onegen_integrations.langchain.chat_models.onegen import ChatOneGen
from onegen_integrations.langchain.messages import to_dialogue
from onegen_integrations.langchain.retrievers.engine import EngineRetriever, check_searchable
from onegen_integrations.langchain.retrievers.onegen import OneGenRetriever
from onegen_integrations.session import OneGenSession


class QuestionInput(TypedDict):
    """Input of the chains: the question, and for `OneGenRAGChain` optionally the turns before it."""

    question: str
    history: NotRequired[Sequence[MessageLikeRepresentation]]


ChainInput = str | QuestionInput | Sequence[MessageLikeRepresentation]
"""A question; `{"question", "history"}`; or a message list ending with the human question."""


class AnswerWithContext(TypedDict):
    """Output of a chain with `output="answer_and_context"`, like `create_retrieval_chain`'s."""

    answer: AIMessage
    """The answer, carrying its retrievals (`additional_kwargs["onegen_retrievals"]`) and usage."""
    context: list[Document]
    """The documents retrieved while answering, in order (each with its `score`)."""


OutputFormat = Literal["text", "answer_and_context"]


class OneGenRAGChain(RunnableSerializable[ChainInput, Any]):
    """Answers a question with retrieval inside generation: one pass, no separate retrieval step.

    The model decodes its answer; where it emits `[RQ]` the hidden state at that token is the
    query vector, `retriever` is searched with it (as a child run: callbacks see
    `on_retriever_start`/`on_retriever_end` with the documents), the documents are fed into
    the same KV cache and decoding goes on. The question is never embedded separately.
    Generation is a child chat-model run of `llm` (`on_chat_model_start`, tokens, `on_llm_end`
    with the usage), so tracing and LangGraph's `stream_mode="messages"` see it.

    Stateless: the input may carry the conversation so far (`{"question", "history"}` or a
    message list). AI messages in it that came from OneGen carry their retrievals, and are
    replayed with their `[RQ]` and passages where they had them, so a follow-up ("Where was
    she born?") retrieves as it would have in a session kept in memory. Use
    `output="answer_and_context"` to get those messages back (for `RunnableWithMessageHistory`
    with `output_messages_key="answer"`, or a LangGraph node).

    Setup:
        A `ChatOneGen` and a `OneGenRetriever` on the same model (the store must have been
        filled by it). An untrained model never emits `[RQ]` by itself, so the engine then
        retrieves once at the start of each answer (`retrieval="always"`).

    Key init args:
        llm: the chat model; its `max_tokens`, `temperature` and `stop` apply.
        retriever: searched at each `[RQ]`; its `k` documents are inserted per retrieval.
        retrieval: `"auto"` (the model decides), `"always"`, or None for the engine's default.
        output: `"text"` (the answer string; streams text pieces) or `"answer_and_context"`
            (`{"answer": AIMessage, "context": [Document]}`; streams addable dicts).

    Example:
        ```python
        from onegen_integrations.langchain import ChatOneGen, OneGenEmbeddings, OneGenRAGChain, OneGenRetriever

        llm = ChatOneGen(model="default", max_tokens=48)
        retriever = OneGenRetriever.from_texts(texts, OneGenEmbeddings(onegen_model=llm.load_model()), k=1)
        chain = OneGenRAGChain(llm=llm, retriever=retriever)
        for token in chain.stream("Who founded the Varenne Institute?"):
            print(token, end="")
        rag = OneGenRAGChain(llm=llm, retriever=retriever, output="answer_and_context")
        first = rag.invoke("Who founded the Varenne Institute?")
        rag.invoke({"question": "Where was she born?", "history": [("human", "Who founded the Varenne Institute?"), first["answer"]]})
        ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: ChatOneGen
    """Generates the answer and the `[RQ]` queries."""
    retriever: OneGenRetriever
    """Searched with the `[RQ]` hidden state; must hold vectors of `llm`'s model."""
    retrieval: Literal["auto", "always"] | None = None
    """When to retrieve: the model decides (`auto`), at the start of every answer (`always`),
    or None for the engine's default (`auto` if the model is trained, else `always`)."""
    output: OutputFormat = "text"
    """`text`: the answer string. `answer_and_context`: `{"answer": AIMessage, "context": [Document]}`,
    the message carrying its retrievals and usage."""

    @model_validator(mode="after")
    def _same_model(self) -> OneGenRAGChain:
        check_searchable(self.retriever, self.llm.load_model())
        return self

    @property
    def InputType(self) -> Any:
        """What `invoke` takes."""
        return ChainInput

    @property
    def OutputType(self) -> Any:
        """What `invoke` returns: `str`, or `AnswerWithContext`."""
        return str if self.output == "text" else AnswerWithContext

    def invoke(self, input: ChainInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The answer: its text, or `{"answer": AIMessage, "context": [Document]}`."""
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(self, input: ChainInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The answer, generated off the event loop."""
        return await self._acall_with_config(self._ainvoke, input, config)

    def stream(self, input: ChainInput, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """The answer as it is decoded: text pieces, or addable `{"context"}`/`{"answer"}` chunks."""
        yield from self._transform_stream_with_config(iter([input]), self._answer, config)

    async def astream(
        self, input: ChainInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """The answer as it is decoded; each decoding step runs in an executor thread."""

        async def inputs() -> AsyncIterator[ChainInput]:
            yield input

        async for piece in self._atransform_stream_with_config(inputs(), self._aanswer, config):
            yield piece

    def _start_turn(self, input: ChainInput, config: RunnableConfig) -> tuple[OneGenSession, list[BaseMessage]]:
        """The session that answers `input`, and the conversation the chat-model run shows.

        Here a new session holding the input's history; `OneGenChatChain` keeps one per session id.
        """
        messages = read_chain_input(input)
        return self.new_session(to_dialogue(messages)), messages

    def new_session(self, dialogue: Dialogue | None = None) -> OneGenSession:
        """A session of `llm` that retrieves from `retriever`, holding `dialogue`'s earlier turns."""
        options: dict[str, Any] = {"k": self.retriever.k}
        if self.retrieval is not None:
            options["retrieval"] = self.retrieval
        return self.llm.start_session(dialogue, EngineRetriever(self.retriever), **options)

    def _answer(self, inputs: Iterator[ChainInput], config: RunnableConfig) -> Iterator[Any]:
        session, messages = self._start_turn(next(inputs), config)
        found = _engine_retriever(session)
        found.take_documents()
        if self.output == "answer_and_context":
            yield AddableDict(context=[])
        for chunk in self.llm.stream(messages, config, session=session):
            yield from self._pieces(found.take_documents(), chunk)
        yield from self._pieces(found.take_documents(), None)

    async def _aanswer(self, inputs: AsyncIterator[ChainInput], config: RunnableConfig) -> AsyncIterator[Any]:
        session, messages = self._start_turn(await anext(inputs), config)
        found = _engine_retriever(session)
        found.take_documents()
        if self.output == "answer_and_context":
            yield AddableDict(context=[])
        async for chunk in self.llm.astream(messages, config, session=session):
            for piece in self._pieces(found.take_documents(), chunk):
                yield piece
        for piece in self._pieces(found.take_documents(), None):
            yield piece

    def _pieces(self, documents: list[Document], chunk: AIMessageChunk | None) -> Iterator[Any]:
        """What the chain streams for documents just retrieved and the answer chunk after them."""
        if self.output == "text":
            if chunk is not None and chunk.text:
                yield chunk.text
            return
        if documents:
            yield AddableDict(context=documents)
        if chunk is not None:
            yield AddableDict(answer=chunk)

    def _invoke(self, input: ChainInput, config: RunnableConfig) -> Any:
        return self._final(self._answer(iter([input]), config))

    async def _ainvoke(self, input: ChainInput, config: RunnableConfig) -> Any:
        async def inputs() -> AsyncIterator[ChainInput]:
            yield input

        return self._final([piece async for piece in self._aanswer(inputs(), config)])

    def _final(self, pieces: Iterable[Any]) -> Any:
        """The streamed pieces as one answer."""
        if self.output == "text":
            return "".join(pieces)
        merged = AddableDict(context=[])
        for piece in pieces:
            merged += piece
        return {"answer": message_chunk_to_message(merged["answer"]), "context": merged["context"]}


def _engine_retriever(session: OneGenSession) -> EngineRetriever:
    assert isinstance(session.retriever, EngineRetriever)
    return session.retriever


def read_chain_input(input: ChainInput) -> list[BaseMessage]:
    """The conversation a chain input gives, ending with the human question; clear errors otherwise."""
    if isinstance(input, str):
        input = {"question": input}
    if isinstance(input, dict):
        if "question" not in input:
            raise TypeError(
                f"give a question string, {{'question': str, 'history': [...]}} or a list of messages, not {input!r}"
            )
        question = input["question"]
        if not isinstance(question, str) or not question.strip():
            raise EmptyTextError(f"the question is empty ({question!r}): ask something")
        return [*convert_to_messages(input.get("history", ())), HumanMessage(question)]
    if not isinstance(input, Sequence):
        raise TypeError(
            f"give a question string, {{'question': str, 'history': [...]}} or a list of messages, not {input!r}"
        )
    messages = convert_to_messages(input)
    if not messages or not isinstance(messages[-1], HumanMessage):
        raise ValueError("the last message must be a human message: it is the question the chain answers")
    if not messages[-1].text.strip():
        raise EmptyTextError(f"the question is empty ({messages[-1].text!r}): ask something")
    return messages
