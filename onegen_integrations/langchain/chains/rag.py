"""`OneGenRAGChain`: question in, answer tokens out, retrieving inside generation in one pass."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage, MessageLikeRepresentation, convert_to_messages
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, model_validator
from typing_extensions import NotRequired, TypedDict

from onegen_integrations.errors import EmbeddingModelMismatchError, EmptyTextError
from onegen_integrations.events import TokenEvent
from onegen_integrations.langchain.chat_models.onegen import ChatOneGen
from onegen_integrations.langchain.messages import Dialogue, to_dialogue
from onegen_integrations.langchain.retrievers.engine import EngineRetriever
from onegen_integrations.langchain.retrievers.onegen import OneGenRetriever
from onegen_integrations.session import OneGenSession


class QuestionInput(TypedDict):
    """Input of the chains: the question, and for `OneGenRAGChain` optionally the turns before it."""

    question: str
    history: NotRequired[Sequence[MessageLikeRepresentation]]


class OneGenRAGChain(RunnableSerializable[str | QuestionInput, str]):
    """Answers a question with retrieval inside generation: one pass, no separate retrieval step.

    The model decodes its answer; where it emits `[RQ]` the hidden state at that token is the
    query vector, `retriever` is searched with it (as a child run: callbacks see
    `on_retriever_start`/`on_retriever_end` with the documents), the documents are fed into
    the same KV cache and decoding goes on. The question is never embedded separately.
    Streams the answer text; `astream_events(version="v2")` shows the retrievals and the
    tokens in the order they happen.

    Setup:
        A `ChatOneGen` and a `OneGenRetriever` on the same model (the store must have been
        filled by it). An untrained model never emits `[RQ]` by itself, so the engine then
        retrieves once at the start of each answer (`retrieval="always"`).

    Key init args:
        llm: the chat model; its `max_tokens`, `temperature` and `stop` apply.
        retriever: searched at each `[RQ]`; its `k` documents are inserted per retrieval.
        retrieval: `"auto"` (the model decides), `"always"`, or None for the engine's default.

    Example:
        ```python
        from onegen_integrations.langchain import ChatOneGen, OneGenEmbeddings, OneGenRAGChain, OneGenRetriever

        llm = ChatOneGen(model="default", max_tokens=48)
        retriever = OneGenRetriever.from_texts(texts, OneGenEmbeddings(onegen_model=llm.load_model()), k=1)
        chain = OneGenRAGChain(llm=llm, retriever=retriever)
        for token in chain.stream("Who founded the Varenne Institute?"):
            print(token, end="")
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

    @model_validator(mode="after")
    def _same_model(self) -> OneGenRAGChain:
        model, indexed_by = self.llm.load_model(), self.retriever.model
        if model.fingerprint != indexed_by.fingerprint:
            raise EmbeddingModelMismatchError(
                f"the retriever's store holds vectors of model {indexed_by.name!r} (fingerprint "
                f"{indexed_by.fingerprint}), but the chat model is {model.name!r} (fingerprint "
                f"{model.fingerprint}): [RQ] states of one model cannot search another's vectors. "
                "Index the documents with the chat model's OneGenEmbeddings"
            )
        return self

    def invoke(self, input: str | QuestionInput, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        """The whole answer text."""
        return "".join(self.stream(input, config, **kwargs))

    async def ainvoke(self, input: str | QuestionInput, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        """The whole answer text, generated off the event loop."""
        return "".join([token async for token in self.astream(input, config, **kwargs)])

    def stream(self, input: str | QuestionInput, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[str]:
        """The answer text, piece by piece as it is decoded."""
        yield from self._transform_stream_with_config(iter([input]), self._answer, config)

    async def astream(
        self, input: str | QuestionInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        """The answer text, piece by piece; each decoding step runs in an executor thread."""

        async def inputs() -> AsyncIterator[str | QuestionInput]:
            yield input

        async for token in self._atransform_stream_with_config(inputs(), self._aanswer, config):
            yield token

    def _start_turn(self, input: str | QuestionInput, config: RunnableConfig) -> tuple[OneGenSession, str]:
        """The session that answers `input`, and the question to send it.

        Here a new session holding the input's history; `OneGenChatChain` keeps one per session id.
        """
        question, history = read_question_input(input)
        dialogue = to_dialogue([*history, HumanMessage(question)])
        return self.new_session(dialogue), dialogue.question

    def new_session(self, dialogue: Dialogue | None = None) -> OneGenSession:
        """A session of `llm` that retrieves from `retriever`, holding `dialogue`'s earlier turns."""
        options: dict[str, Any] = {"k": self.retriever.k}
        if self.retrieval is not None:
            options["retrieval"] = self.retrieval
        return self.llm.start_session(dialogue, EngineRetriever(self.retriever), **options)

    def _answer(self, inputs: Iterator[str | QuestionInput], config: RunnableConfig) -> Iterator[str]:
        session, question = self._start_turn(next(inputs), config)
        for event in session.send(question):
            if isinstance(event, TokenEvent):
                yield event.text

    async def _aanswer(self, inputs: AsyncIterator[str | QuestionInput], config: RunnableConfig) -> AsyncIterator[str]:
        session, question = self._start_turn(await anext(inputs), config)
        events = session.send(question)
        try:
            while (event := await run_in_executor(config, next, events, None)) is not None:
                if isinstance(event, TokenEvent):
                    yield event.text
        finally:
            events.close()


def read_question_input(input: str | QuestionInput) -> tuple[str, list[BaseMessage]]:
    """The question and history messages of a chain input; clear errors for anything else."""
    if isinstance(input, str):
        input = {"question": input}
    if not isinstance(input, dict) or "question" not in input:
        raise TypeError(f"give a question string or {{'question': str, 'history': [...]}}, not {input!r}")
    question, history = input["question"], input.get("history", ())
    if not isinstance(question, str) or not question.strip():
        raise EmptyTextError(f"the question is empty ({question!r}): ask something")
    return question, convert_to_messages(history)
