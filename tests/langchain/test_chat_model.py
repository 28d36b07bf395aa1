"""ChatOneGen beyond the standard suites: how messages reach the engine, stops, options, limits, caches, retrieval."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, FunctionMessage, HumanMessage, SystemMessage

from onegen_integrations.errors import EmbeddingModelMismatchError, UnsupportedFrameworkError
from onegen_integrations.langchain import ChatOneGen, OneGenChatChain, OneGenEmbeddings
from onegen_integrations.langchain.messages import to_dialogue
from onegen_integrations.model import OneGenModel
from onegen_integrations.options import DEFAULTS
from onegen_integrations.replay import RETRIEVALS_KEY, ReplayFormatError
from tests.conftest import make_tiny_model
from tests.langchain.probes import TEXTS, count_calls


@pytest.fixture
def chat(tiny_model: OneGenModel) -> ChatOneGen:
    return ChatOneGen(onegen_model=tiny_model, max_tokens=8)


def test_history_is_fed_exactly_as_the_chat_template_renders_the_conversation(chat: ChatOneGen) -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("Hi"), AIMessage("Hello there."), HumanMessage("Who are you?")]
    session = chat.start_session(to_dialogue(messages), max_new_tokens=1)
    session.ask(to_dialogue(messages).message)
    roles = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}
    rendered = chat.load_model().tokenizer.apply_chat_template(
        [{"role": roles[type(m)], "content": m.text} for m in messages], tokenize=False, add_generation_prompt=True
    )
    expected = chat.load_model().text.markup(rendered)
    assert session.token_ids[: len(expected)] == expected


def test_consecutive_messages_of_one_role_and_all_system_messages_are_joined() -> None:
    dialogue = to_dialogue(
        [
            SystemMessage("a"),
            SystemMessage("b"),
            HumanMessage("q1"),
            HumanMessage("q2"),
            AIMessage("r"),
            HumanMessage("q3"),
        ]
    )
    assert dialogue.system_prompt == "a\n\nb"
    assert dialogue.history == [{"role": "user", "content": "q1\n\nq2"}, {"role": "assistant", "content": "r"}]
    assert dialogue.message == "q3"


def test_a_conversation_opened_by_the_assistant_gets_an_empty_first_user_turn() -> None:
    dialogue = to_dialogue([AIMessage("How can I help?"), HumanMessage("Tell me a fact.")])
    assert dialogue.history == [{"role": "user", "content": ""}, {"role": "assistant", "content": "How can I help?"}]


def test_an_ai_messages_retrievals_go_with_its_turn_from_either_metadata_field() -> None:
    past = [{"offset": 0, "hits": [{"id": "a", "text": "A.", "score": 0.5}]}]
    dialogue = to_dialogue(
        [
            HumanMessage("q1"),
            AIMessage("r1", additional_kwargs={RETRIEVALS_KEY: past}),
            HumanMessage("q2"),
            AIMessage("r2", response_metadata={RETRIEVALS_KEY: []}),
            HumanMessage("q3"),
            AIMessage("r3"),
            HumanMessage("q4"),
        ]
    )
    assert [turn.get(RETRIEVALS_KEY) for turn in dialogue.history[1::2]] == [past, [], None]


def test_joined_ai_messages_keep_their_retrievals_at_the_offsets_of_the_joined_text() -> None:
    hit = {"id": "a", "text": "A.", "score": 0.5}
    first = AIMessage("Odile.", additional_kwargs={RETRIEVALS_KEY: [{"offset": 0, "hits": [hit]}]})
    second = AIMessage("Selbrook.", additional_kwargs={RETRIEVALS_KEY: [{"offset": 3, "hits": [hit]}]})
    joined = to_dialogue([HumanMessage("q"), first, second, HumanMessage("q2")]).history[1]
    assert joined["content"] == "Odile.\n\nSelbrook."
    assert [r["offset"] for r in joined[RETRIEVALS_KEY]] == [0, len("Odile.\n\n") + 3]
    unknown = to_dialogue([HumanMessage("q"), first, AIMessage("More."), HumanMessage("q2")]).history[1]
    assert RETRIEVALS_KEY not in unknown
    with pytest.raises(ReplayFormatError, match=RETRIEVALS_KEY):
        to_dialogue(
            [HumanMessage("q"), first, AIMessage("x", additional_kwargs={RETRIEVALS_KEY: 1}), HumanMessage("?")]
        )


def test_every_answer_carries_its_retrievals_once_in_the_merged_message(chat: ChatOneGen) -> None:
    chunks = list(chat.stream("Hello"))
    assert [RETRIEVALS_KEY in chunk.additional_kwargs for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.additional_kwargs == {RETRIEVALS_KEY: []}  # retrieval is off: known to have none
    assert chat.invoke("Hello").additional_kwargs == {RETRIEVALS_KEY: []}


def test_the_last_message_must_be_the_human_or_tool_one_to_answer(chat: ChatOneGen) -> None:
    with pytest.raises(ValueError, match="last message must be a human or tool message"):
        chat.invoke([HumanMessage("hi"), AIMessage("hello")])


def test_messages_other_than_system_human_ai_and_tool_are_refused_naming_what_is_taken(chat: ChatOneGen) -> None:
    with pytest.raises(UnsupportedFrameworkError, match="take system, human, AI and tool messages"):
        chat.invoke([HumanMessage("2+2?"), FunctionMessage("4", name="add"), HumanMessage("so?")])


def test_stop_strings_from_the_call_and_from_the_instance_both_cut_the_answer(chat: ChatOneGen) -> None:
    full = chat.invoke("Tell me about harbours.").text
    assert len(full) >= 4
    stop = full[2:4]
    expected = full[: full.find(stop)]
    assert chat.invoke("Tell me about harbours.", stop=[stop]).text == expected
    with_instance_stop = ChatOneGen(onegen_model=chat.load_model(), max_tokens=8, stop=[stop])
    assert with_instance_stop.invoke("Tell me about harbours.").text == expected


def test_stream_yields_token_chunks_then_one_last_chunk_with_usage(chat: ChatOneGen) -> None:
    chunks = list(chat.stream("Hello"))
    *tokens, last = chunks
    assert tokens and all(chunk.text and chunk.usage_metadata is None for chunk in tokens)
    assert last.chunk_position == "last" and last.text == ""
    assert last.usage_metadata is not None and last.usage_metadata["output_tokens"] == 8
    assert last.response_metadata == {"model_name": "tiny-0", "finish_reason": "length"}


def test_max_tokens_can_be_set_per_call_and_unknown_options_are_rejected(chat: ChatOneGen) -> None:
    assert chat.invoke("Hello", max_tokens=3).usage_metadata["output_tokens"] == 3
    with pytest.raises(TypeError, match="does not take frequency_penalty"):
        chat.invoke("Hello", frequency_penalty=0.5)


def test_construction_loads_nothing_and_given_models_name_the_runs(tiny_model: OneGenModel) -> None:
    lazy = ChatOneGen(model="some/dir/that/is/never/read")
    assert lazy.onegen_model is None
    assert ChatOneGen(onegen_model=tiny_model)._get_ls_params()["ls_model_name"] == "tiny-0"


@pytest.mark.default_model
def test_chat_model_and_embeddings_loaded_by_name_share_one_model(default_model: OneGenModel) -> None:
    assert ChatOneGen(model="default").load_model() is default_model
    assert OneGenEmbeddings(model="default").load_model() is default_model


def test_defaults_and_allowed_values_are_the_engines_generation_options() -> None:
    chat = ChatOneGen(model="default")
    fields = (chat.max_tokens, chat.temperature, chat.top_p, chat.top_k, tuple(chat.stop or ()))
    assert fields == (DEFAULTS.max_new_tokens, DEFAULTS.temperature, DEFAULTS.top_p, DEFAULTS.top_k, DEFAULTS.stop)
    with pytest.raises(ValueError, match="max_tokens must be at least 1, not 0"):
        ChatOneGen(model="default", max_tokens=0)
    with pytest.raises(ValueError, match="temperature must be at least 0, not -1"):
        ChatOneGen(model="default", temperature=-1)


def test_per_call_options_out_of_range_are_refused_under_their_langchain_names(chat: ChatOneGen) -> None:
    with pytest.raises(ValueError, match="max_tokens must be at least 1, not 0"):
        chat.invoke("Hello", max_tokens=0)
    with pytest.raises(ValueError, match=r"top_k must be an integer, at least 0, not -1\.5"):
        chat.invoke("Hello", top_k=-1.5)


def test_top_k_and_seed_shape_sampling(chat: ChatOneGen) -> None:
    greedy = chat.invoke("Tell me about harbours.").text
    assert chat.invoke("Tell me about harbours.", temperature=1.0, top_k=1).text == greedy
    model = chat.load_model()
    seeded = [ChatOneGen(onegen_model=model, max_tokens=8, temperature=1.5, seed=seed) for seed in (7, 7, 8)]
    first, again, other = (one.invoke("Tell me about harbours.").text for one in seeded)
    assert first == again != other


def test_a_conversation_continued_in_a_later_call_feeds_only_the_new_message(chat: ChatOneGen) -> None:
    first = chat.invoke([HumanMessage("Hi")])
    forwards = count_calls(chat.load_model(), "forward")
    answer = chat.invoke([HumanMessage("Hi"), first, HumanMessage("Who are you?")])
    usage = answer.usage_metadata
    assert usage is not None and usage["input_token_details"]["cache_read"] > 0
    fed = sum(len(ids) for ids, *_ in forwards)
    assert fed == usage["input_tokens"] - usage["input_token_details"]["cache_read"] + usage["output_tokens"] - 1
    fresh = ChatOneGen(onegen_model=chat.load_model(), max_tokens=8, cached_conversations=0)
    assert fresh.invoke([HumanMessage("Hi"), first, HumanMessage("Who are you?")]).text == answer.text


def test_a_copy_with_other_settings_keeps_its_own_conversations(chat: ChatOneGen) -> None:
    first = chat.invoke([HumanMessage("Hi")])
    shorter = chat.model_copy(update={"max_tokens": 3})
    answer = shorter.invoke([HumanMessage("Hi"), first, HumanMessage("Who are you?")])
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 3


def test_with_a_retriever_the_model_retrieves_inside_its_answer(chat_chain: OneGenChatChain) -> None:
    retriever = chat_chain.retriever
    chat = ChatOneGen(onegen_model=retriever.model, max_tokens=6, retriever=retriever)
    answer = chat.invoke("Who founded the Varenne Institute?")
    [retrieval] = answer.additional_kwargs[RETRIEVALS_KEY]  # an untrained model: once, at the start
    assert retrieval["offset"] == 0 and [hit["text"] in TEXTS for hit in retrieval["hits"]] == [True]


def test_a_retriever_whose_store_another_model_filled_is_refused(chat_chain: OneGenChatChain) -> None:
    with pytest.raises(EmbeddingModelMismatchError, match="cannot search another's vectors"):
        ChatOneGen(onegen_model=make_tiny_model(seed=1), retriever=chat_chain.retriever)
