"""History that arrives as messages continues like a session kept in memory (default model, demo corpus).

Two conversations open differently and follow up with the same words, "Where was she born?",
which alone retrieves Odile Marchetti: only the history tells the second one it means Agnes
Brannock. Every answer carries its retrievals in its message, so each stateless path (the RAG
chain given the history, `RunnableWithMessageHistory`, a LangGraph thread restarted from its
SQLite checkpoint) replays them and retrieves, and answers, as the live session did.

The answers match to the text except at a near tie: a cache rebuilt from the messages in one batch
and a cache written token by token hold the same tokens but round differently, which can swap two
words the model scores all but equally. Varenne's follow-up is one: after Odile Marchetti's page
(born in Selbrook, worked in Corvant) " Sel" and " Cor" are 0.03 logits apart on the default
model, where every other first answer token leads by more than 5.
"""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings
from langchain_core.messages import AIMessage, HumanMessage

from onegen_integrations.langchain import ChatOneGen, OneGenChatChain, OneGenEmbeddings, OneGenRAGChain, OneGenRetriever
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY
from tests.langchain.probes import with_message_history

pytestmark = pytest.mark.default_model

FOLLOW_UP = "Where was she born?"
OPENINGS = {"varenne": "Who founded the Varenne Institute?", "brannock": "Who founded the Brannock Line?"}
GOLD = {"varenne": [["varenne-institute"], ["odile-marchetti"]], "brannock": [["brannock-line"], ["agnes-brannock"]]}
NEAR_TIES = {"varenne": {" Selbrook", " Corvant"}}
"""Follow-up answers that float rounding may swap (see above); both come from the retrieved page."""


@pytest.fixture(scope="module")
def llm(default_model: OneGenModel) -> ChatOneGen:
    return ChatOneGen(onegen_model=default_model, max_tokens=24)


@pytest.fixture(scope="module")
def retriever(
    llm: ChatOneGen, corpus: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> OneGenRetriever:
    path = tmp_path_factory.mktemp("chroma")
    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    return OneGenRetriever.from_texts(
        [record["text"] for record in corpus],
        OneGenEmbeddings(onegen_model=llm.load_model()),
        ids=[record["id"] for record in corpus],
        k=1,
        client=client,
    )


@pytest.fixture(scope="module")
def rag(llm: ChatOneGen, retriever: OneGenRetriever) -> OneGenRAGChain:
    return OneGenRAGChain(llm=llm, retriever=retriever, output="answer_and_context")


@pytest.fixture(scope="module")
def live(llm: ChatOneGen, retriever: OneGenRetriever) -> dict[str, list[AIMessage]]:
    """Both conversations answered in sessions kept in memory: what every stateless path must match."""
    chat = OneGenChatChain(llm=llm, retriever=retriever, output="answer_and_context")
    return {
        name: [
            chat.invoke(question, {"configurable": {"session_id": name}})["answer"] for question in (opening, FOLLOW_UP)
        ]
        for name, opening in OPENINGS.items()
    }


def retrieved(answer: AIMessage) -> list[str]:
    return [hit["id"] for retrieval in answer.additional_kwargs[RETRIEVALS_KEY] for hit in retrieval["hits"]]


def test_live_sessions_retrieve_each_turns_document_and_the_follow_up_alone_does_not(
    live: dict[str, list[AIMessage]], rag: OneGenRAGChain
) -> None:
    assert {name: [retrieved(answer) for answer in answers] for name, answers in live.items()} == GOLD
    assert retrieved(rag.invoke(FOLLOW_UP)["answer"]) == ["odile-marchetti"]


@pytest.mark.parametrize("name", OPENINGS)
def test_the_rag_chain_given_the_history_as_messages_follows_up_like_the_live_session(
    rag: OneGenRAGChain, live: dict[str, list[AIMessage]], name: str
) -> None:
    first = rag.invoke(OPENINGS[name])["answer"]
    follow_up = rag.invoke({"question": FOLLOW_UP, "history": [HumanMessage(OPENINGS[name]), first]})["answer"]
    assert [retrieved(first), retrieved(follow_up)] == GOLD[name]
    assert first.text == live[name][0].text
    assert {follow_up.text, live[name][1].text} <= NEAR_TIES.get(name, {live[name][1].text})


def test_runnable_with_message_history_follows_up_like_the_live_session(
    rag: OneGenRAGChain, live: dict[str, list[AIMessage]]
) -> None:
    chain, _ = with_message_history(rag)
    config = {"configurable": {"session_id": "brannock"}}
    answers = [chain.invoke({"question": q}, config)["answer"] for q in (OPENINGS["brannock"], FOLLOW_UP)]
    assert [retrieved(answer) for answer in answers] == GOLD["brannock"]
    assert [answer.text for answer in answers] == [answer.text for answer in live["brannock"]]


def test_a_langgraph_thread_restarted_from_its_sqlite_checkpoint_follows_up_like_the_live_session(
    llm: ChatOneGen, retriever: OneGenRetriever, live: dict[str, list[AIMessage]], tmp_path: Path
) -> None:
    sqlite = pytest.importorskip("langgraph.checkpoint.sqlite")
    from langgraph.graph import START, MessagesState, StateGraph

    def build(checkpointer: object):  # what a restarted process builds: a new chain and graph
        rag = OneGenRAGChain(llm=llm, retriever=retriever, output="answer_and_context")

        def answer(state: MessagesState) -> dict:
            return {"messages": [rag.invoke(state["messages"])["answer"]]}

        return StateGraph(MessagesState).add_node(answer).add_edge(START, "answer").compile(checkpointer=checkpointer)

    config = {"configurable": {"thread_id": "brannock"}}
    with sqlite.SqliteSaver.from_conn_string(str(tmp_path / "checkpoints.sqlite")) as saver:
        build(saver).invoke({"messages": [("human", OPENINGS["brannock"])]}, config)
    with sqlite.SqliteSaver.from_conn_string(str(tmp_path / "checkpoints.sqlite")) as saver:
        graph = build(saver)
        streamed = [
            chunk for chunk, _ in graph.stream({"messages": [("human", FOLLOW_UP)]}, config, stream_mode="messages")
        ]
        messages = graph.get_state(config).values["messages"]
    answers = messages[1::2]
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"]
    assert [retrieved(answer) for answer in answers] == GOLD["brannock"]
    assert [answer.text for answer in answers] == [answer.text for answer in live["brannock"]]
    assert "".join(chunk.text for chunk in streamed) == answers[1].text
