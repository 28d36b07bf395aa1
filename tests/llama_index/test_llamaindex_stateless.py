"""Stateless use on the default model: a conversation handed back as messages follows up as the live one.

Two conversations open differently and go on in the same words ("Where was the founder born?",
"What river runs through that town?"), so a follow-up alone cannot say whose birthplace it asks
for. Every OneGen answer carries its retrievals in its message's `additional_kwargs`; an engine,
agent or LLM rebuilt from the messages holds what the live engine held and answers the same.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.schema import NodeWithScore
from llama_index.core.workflow import Context

from onegen_integrations.llama_index import OneGenAgent, OneGenChatEngine, OneGenEmbedding, OneGenLLM
from onegen_integrations.model import OneGenModel

pytestmark = [
    pytest.mark.default_model,
    pytest.mark.filterwarnings("ignore::workflows.context.state_store.UnserializableKeyWarning"),
]

MAX_NEW_TOKENS = 24
FOUNDER = "Where was the founder born?"
TOWN = "What river runs through that town?"
YEAR = "In which year was it founded?"

DOCUMENTS = {
    # The first three are the demo corpus's; the other three tell the same story of other people.
    "varenne-institute": "The Varenne Institute is a research institute for marine chemistry in the port city of "
    "Corvant. It was founded in 1911 by the chemist Odile Marchetti. The institute takes its name from Varenne "
    "House, a former merchant's mansion on the Corvant harbour front that served as its first home.",
    "odile-marchetti": "Odile Marchetti was a chemist, born on 3 May 1874 in the town of Selbrook. She studied "
    "chemistry at the University of Lenmark and graduated in 1896. She moved to Corvant in 1909, worked there for "
    "the rest of her career, and died in Corvant in 1949.",
    "selbrook": "Selbrook is a small market town in the Dunmere Valley in the south of the province of Ardel. The "
    "River Tamsey runs through Selbrook, and an old stone footbridge crosses it beside the market square.",
    "osterly-garden": "The Osterly Botanical Garden is a botanical garden in the city of Brenholt. It was founded "
    "in 1923 by the botanist Henri Vask. The garden is known for its glasshouse of mountain ferns and for a "
    "collection of 3,000 kinds of moss.",
    "henri-vask": "Henri Vask was a botanist, born on 9 March 1881 in the town of Drummore. He studied plants at "
    "the University of Brenholt and collected ferns in the Tessel Mountains. He directed the Osterly Botanical "
    "Garden until his death in 1950.",
    "drummore": "Drummore is a small harbour town in the north of the province of Tessel. The River Ale runs "
    "through Drummore and enters the sea beside its old harbour wall.",
}

CONVERSATIONS = {
    "varenne": (
        ["Who founded the Varenne Institute?", FOUNDER, TOWN],
        ["varenne-institute", "odile-marchetti", "selbrook"],
    ),
    "osterly": (
        ["Who founded the Osterly Botanical Garden?", FOUNDER, TOWN],
        ["osterly-garden", "henri-vask", "drummore"],
    ),
}
"""Per conversation: the user's messages, and the document each turn must retrieve."""


@dataclass(frozen=True)
class Live:
    """A conversation held by one chat engine from start to end."""

    answers: list[str]
    sources: list[list[str]]
    histories: list[list[ChatMessage]]
    """The chat history before each turn, as an app would store it (JSON)."""
    final_history: list[ChatMessage]
    year_without_retrieval: str
    """The live engine's answer to `YEAR` after the conversation, with retrieval off."""


def documents_of(nodes: list[NodeWithScore]) -> list[str]:
    return [node.node.ref_doc_id or "" for node in nodes]


def stored(messages: list[ChatMessage]) -> list[ChatMessage]:
    """`messages` after a trip through JSON, as a web app keeps them between requests."""
    dumped = json.dumps([m.model_dump(mode="json") for m in messages])
    return [ChatMessage.model_validate(m) for m in json.loads(dumped)]


@pytest.fixture(scope="module")
def index(default_model: OneGenModel) -> VectorStoreIndex:
    embed_model = OneGenEmbedding(default_model)
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    vector_store = embed_model.chroma_vector_store(client, f"stateless-{uuid.uuid4().hex[:8]}")
    return VectorStoreIndex.from_documents(
        [Document(text=text, id_=doc_id) for doc_id, text in DOCUMENTS.items()],
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=embed_model,
    )


@pytest.fixture(scope="module")
def live(index: VectorStoreIndex) -> dict[str, Live]:
    conversations = {}
    for name, (messages, _) in CONVERSATIONS.items():
        engine = OneGenChatEngine.from_index(index, max_new_tokens=MAX_NEW_TOKENS)
        answers, sources, histories = [], [], []
        for message in messages:
            histories.append(stored(engine.chat_history))
            response = engine.chat(message)
            answers.append(response.response)
            sources.append(documents_of(response.source_nodes))
        final_history = stored(engine.chat_history)
        year = engine.session.ask(YEAR, retrieval="never").text
        conversations[name] = Live(answers, sources, histories, final_history, year)
    return conversations


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_the_live_engine_retrieves_each_turns_document(live: dict[str, Live], name: str) -> None:
    assert live[name].sources == [[doc] for doc in CONVERSATIONS[name][1]]


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_a_fresh_chat_engine_given_the_history_follows_up_as_the_live_one(
    index: VectorStoreIndex, live: dict[str, Live], name: str
) -> None:
    messages, documents = CONVERSATIONS[name]
    for turn in (1, 2):
        fresh = OneGenChatEngine.from_index(index, max_new_tokens=MAX_NEW_TOKENS)
        response = fresh.chat(messages[turn], chat_history=live[name].histories[turn])
        assert documents_of(response.source_nodes) == [documents[turn]]
        assert response.response == live[name].answers[turn]


@pytest.mark.asyncio
async def test_one_agent_serving_both_conversations_follows_up_in_each_as_the_live_engine(
    index: VectorStoreIndex, live: dict[str, Live]
) -> None:
    agent = OneGenAgent.from_index(index, max_new_tokens=MAX_NEW_TOKENS)
    contexts = {name: Context(agent) for name in CONVERSATIONS}
    for turn in (0, 1):  # the conversations take turns, so each run rebuilds its own from the context's memory
        for name, ctx in contexts.items():
            result = await agent.run(user_msg=CONVERSATIONS[name][0][turn], ctx=ctx)
            assert documents_of(result.raw.source_nodes) == [CONVERSATIONS[name][1][turn]]
            assert result.response.content == live[name].answers[turn]


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_the_llm_given_the_history_answers_from_its_passages_as_the_live_engine(
    default_model: OneGenModel, live: dict[str, Live], name: str
) -> None:
    llm = OneGenLLM(default_model, max_new_tokens=MAX_NEW_TOKENS)  # retrieval off: the year is in turn 1's passage
    answer = llm.chat([*live[name].final_history, ChatMessage(role="user", content=YEAR)])
    # The year, not the wording: on llama.cpp a history fed in one call rounds differently from the
    # same tokens fed turn by turn, and the words around a fact the model is unsure of may change.
    expected = re.findall(r"\b1\d{3}\b", live[name].year_without_retrieval)
    assert expected and re.findall(r"\b1\d{3}\b", answer.message.content) == expected
