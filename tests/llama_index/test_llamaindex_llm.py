"""OneGenLLM: a LlamaIndex LLM on the engine with retrieval off."""

from __future__ import annotations

import json

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

from onegen_integrations.errors import EmptyTextError, InvalidOptionError
from onegen_integrations.llama_index import OneGenChatEngine, OneGenLLM
from onegen_integrations.llama_index.messages import to_dialogue
from onegen_integrations.options import DEFAULTS
from onegen_integrations.replay import RETRIEVALS_KEY

HISTORY = [
    ChatMessage(role="system", content="Answer in one word."),
    ChatMessage(role="user", content="Name a colour."),
    ChatMessage(role="assistant", content="Blue."),
    ChatMessage(role="user", content="Another one?"),
]


def test_metadata_reports_the_models_context_window_and_name(model):
    llm = OneGenLLM(model, max_new_tokens=7)
    assert llm.metadata.context_window == model.context_window == 512
    assert llm.metadata.num_output == 7
    assert llm.metadata.is_chat_model and llm.metadata.model_name == "tiny-0"


def test_complete_answers_the_prompt_as_a_user_message(model):
    llm = OneGenLLM(model, max_new_tokens=6)
    expected = model.session(retrieval="never", max_new_tokens=6).ask("Name a colour.").text
    assert llm.complete("Name a colour.").text == expected


def test_streamed_completion_adds_up_to_the_completion(model):
    llm = OneGenLLM(model, max_new_tokens=6)
    chunks = list(llm.stream_complete("Name a colour."))
    assert "".join(c.delta for c in chunks) == chunks[-1].text == llm.complete("Name a colour.").text


def test_chat_feeds_the_history_in_the_chat_template(model):
    dialogue = to_dialogue(HISTORY)
    session = dialogue.open(model, retrieval="never", max_new_tokens=4)
    done = session.ask(dialogue.message)
    rendered = model.tokenizer.apply_chat_template(
        [{"role": m.role.value, "content": m.content} for m in HISTORY], tokenize=False, add_generation_prompt=True
    )
    prompt = model.text.markup(rendered)
    assert session.token_ids[: len(prompt)] == prompt
    assert OneGenLLM(model, max_new_tokens=4).chat(HISTORY).message.content == done.text


def test_streamed_chat_adds_up_to_the_chat_answer(model):
    llm = OneGenLLM(model, max_new_tokens=6)
    chunks = list(llm.stream_chat(HISTORY))
    assert "".join(c.delta for c in chunks) == chunks[-1].message.content == llm.chat(HISTORY).message.content


def test_stop_strings_cut_the_answer(model):
    llm = OneGenLLM(model, max_new_tokens=12)
    full = llm.complete("Who wrote programs?").text
    stop = full[len(full) // 2 :][:3]
    cut = llm.complete("Who wrote programs?", stop=[stop]).text
    assert len(full) > 6 and cut == full[: full.index(stop)]


def test_per_call_options_must_be_generation_options(model):
    with pytest.raises(TypeError, match="max_new_tokens"):
        OneGenLLM(model).complete("hi", beam_width=3)


def test_a_list_must_end_with_the_users_message(model):
    with pytest.raises(ValueError, match="last message must be a user or tool message"):
        OneGenLLM(model).chat(HISTORY[:3])
    with pytest.raises(EmptyTextError):
        OneGenLLM(model).chat([ChatMessage(role="user", content="  ")])


@pytest.mark.asyncio
async def test_async_variants_match_the_sync_ones(model):
    llm = OneGenLLM(model, max_new_tokens=5)
    expected = llm.chat(HISTORY).message.content
    assert (await llm.achat(HISTORY)).message.content == expected
    assert (await llm.acomplete("Name a colour.")).text == llm.complete("Name a colour.").text
    chunks = [c async for c in await llm.astream_chat(HISTORY)]
    assert "".join(c.delta for c in chunks) == expected
    completions = [c async for c in await llm.astream_complete("Name a colour.")]
    assert completions[-1].text == llm.complete("Name a colour.").text


def test_an_answer_in_the_history_is_fed_with_its_passages(index, model):
    engine = OneGenChatEngine.from_index(index, max_new_tokens=4)
    engine.chat("Who founded the Varenne Institute?")
    messages = [*engine.chat_history, ChatMessage(role="user", content="Where was she born?")]
    expected = engine.session.ask("Where was she born?", retrieval="never")
    replayed = to_dialogue(messages).open(model, retrieval="never", max_new_tokens=4)
    replayed.ask("Where was she born?")
    assert replayed.token_ids == engine.session.token_ids
    assert OneGenLLM(model, max_new_tokens=4).chat(messages).message.content == expected.text


def test_responses_carry_json_usage_that_token_counting_reads(model):
    counter = TokenCountingHandler(tokenizer=model.tokenizer.encode)
    llm = OneGenLLM(model, max_new_tokens=5, callback_manager=CallbackManager([counter]))
    response = llm.chat(HISTORY)
    usage = json.loads(json.dumps(response.raw))["usage"]
    assert response.message.additional_kwargs == {RETRIEVALS_KEY: []}  # retrieval is off
    assert counter.prompt_llm_token_count == usage["prompt_tokens"] > 0
    assert counter.completion_llm_token_count == usage["completion_tokens"] > 0
    chunks = list(llm.stream_chat(HISTORY))
    assert chunks[-1].delta == "" and chunks[-1].raw["usage"]["completion_tokens"] == usage["completion_tokens"]
    assert chunks[-1].message.additional_kwargs == {RETRIEVALS_KEY: []}
    assert counter.completion_llm_token_count == 2 * usage["completion_tokens"]


def test_defaults_and_allowed_values_are_the_engines_generation_options(model):
    llm = OneGenLLM(model)
    fields = (llm.max_new_tokens, llm.temperature, llm.top_p, llm.top_k, tuple(llm.stop))
    assert fields == (DEFAULTS.max_new_tokens, DEFAULTS.temperature, DEFAULTS.top_p, DEFAULTS.top_k, DEFAULTS.stop)
    with pytest.raises(ValueError, match="temperature must be at least 0, not -1"):
        OneGenLLM(model, temperature=-1)
    with pytest.raises(ValueError, match=r"top_p must be greater than 0 and at most 1, not 1\.5"):
        OneGenLLM(model, top_p=1.5)


def test_a_per_call_option_out_of_range_is_refused_before_generating(model):
    with pytest.raises(InvalidOptionError, match="temperature must be at least 0, not -1"):
        OneGenLLM(model).complete("Name a colour.", temperature=-1)
    with pytest.raises(InvalidOptionError, match="max_new_tokens must be at least 1, not 0"):
        OneGenLLM(model).chat(HISTORY, max_new_tokens=0)


def test_top_k_reaches_the_engine_as_a_field_and_per_call(model):
    greedy = OneGenLLM(model, max_new_tokens=6).complete("Name a colour.").text
    assert OneGenLLM(model, max_new_tokens=6, temperature=1.0, top_k=1).complete("Name a colour.").text == greedy
    llm = OneGenLLM(model, max_new_tokens=6, temperature=1.0, seed=0)
    assert llm.complete("Name a colour.", top_k=1).text == greedy
