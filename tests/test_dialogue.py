"""Dialogue: one set of rules turning a conversation into system prompt, history and the message to answer."""

from __future__ import annotations

import pytest

from onegen_integrations.dialogue import Dialogue, Turn
from onegen_integrations.errors import EmptyTextError
from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY, ReplayFormatError

PAST = [{"offset": 4, "hits": [{"id": "ada", "text": "Ada was born in Paris.", "score": 0.5}]}]


def test_system_turns_join_into_the_system_prompt_wherever_they_stand() -> None:
    dialogue = Dialogue.from_turns(
        [Turn("system", "Be brief."), Turn("user", "Hi"), Turn("system", "Be kind."), Turn("user", "Who?")]
    )
    assert dialogue.system_prompt == "Be brief.\n\nBe kind."
    assert dialogue.history == []
    assert dialogue.message == "Hi\n\nWho?"


def test_without_system_turns_the_system_prompt_is_none_and_an_empty_one_is_kept() -> None:
    assert Dialogue.from_turns([Turn("user", "Hi")]).system_prompt is None
    assert Dialogue.from_turns([Turn("system", ""), Turn("user", "Hi")]).system_prompt == ""


def test_consecutive_turns_of_one_side_join_into_one_message() -> None:
    dialogue = Dialogue.from_turns(
        [Turn("user", "q1"), Turn("user", "q2"), Turn("assistant", "r1"), Turn("assistant", "r2"), Turn("user", "q3")]
    )
    assert dialogue.history == [{"role": "user", "content": "q1\n\nq2"}, {"role": "assistant", "content": "r1\n\nr2"}]
    assert dialogue.message == "q3"


def test_a_conversation_opened_by_the_assistant_gets_an_empty_first_user_message() -> None:
    dialogue = Dialogue.from_turns([Turn("assistant", "How can I help?"), Turn("user", "Tell me a fact.")])
    assert dialogue.history == [{"role": "user", "content": ""}, {"role": "assistant", "content": "How can I help?"}]


@pytest.mark.parametrize(
    "turns", [[], [Turn("system", "Be brief.")], [Turn("user", "Hi"), Turn("assistant", "Hello.")]]
)
def test_the_last_turn_must_be_the_users_and_the_error_says_what_to_append(turns: list[Turn]) -> None:
    with pytest.raises(ValueError, match=r"last message must be the user's.*append a user message"):
        Dialogue.from_turns(turns)
    with pytest.raises(ValueError, match=r"last message must be a human message.*append HumanMessage\(\.\.\.\)"):
        Dialogue.from_turns(turns, user_message="a human message", append="HumanMessage(...)")


def test_an_empty_user_message_is_refused() -> None:
    with pytest.raises(EmptyTextError, match="user message is empty"):
        Dialogue.from_turns([Turn("user", "Hi"), Turn("assistant", "Hello."), Turn("user", " \n")])


def test_an_answers_retrievals_stay_on_its_turn_and_a_users_are_ignored() -> None:
    dialogue = Dialogue.from_turns(
        [
            Turn("user", "q1", PAST),
            Turn("assistant", "Ada, of Paris.", PAST),
            Turn("user", "q2"),
            Turn("assistant", "No idea."),
            Turn("user", "q3"),
        ]
    )
    assert dialogue.history[0] == {"role": "user", "content": "q1"}
    assert dialogue.history[1][RETRIEVALS_KEY] == PAST
    assert RETRIEVALS_KEY not in dialogue.history[3]  # unknown: a replay decides again


def test_retrievals_not_written_by_onegen_are_refused_naming_the_key() -> None:
    with pytest.raises(ReplayFormatError, match=RETRIEVALS_KEY):
        Dialogue.from_turns(
            [Turn("user", "q"), Turn("assistant", "r", [{"offset": -1, "hits": []}]), Turn("user", "?")]
        )


def test_joined_answers_keep_retrievals_only_when_each_part_has_them() -> None:
    kept = Dialogue.from_turns(
        [Turn("user", "q"), Turn("assistant", "Ada.", PAST), Turn("assistant", "More.", []), Turn("user", "?")]
    )
    assert kept.history[1][RETRIEVALS_KEY] == PAST
    unknown = Dialogue.from_turns(
        [Turn("user", "q"), Turn("assistant", "Ada.", PAST), Turn("assistant", "More."), Turn("user", "?")]
    )
    assert RETRIEVALS_KEY not in unknown.history[1]


def test_a_turn_with_another_role_is_refused() -> None:
    with pytest.raises(ValueError, match="system, user, assistant"):
        Turn("tool", "4")  # type: ignore[arg-type]


def test_same_history_compares_texts_and_recorded_passages_but_not_scores() -> None:
    dialogue = Dialogue.from_turns([Turn("user", "q"), Turn("assistant", "Ada, of Paris.", PAST), Turn("user", "?")])
    rescored = [{**PAST[0], "hits": [{**PAST[0]["hits"][0], "score": 0.5000001}]}]
    held = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Ada, of Paris.", RETRIEVALS_KEY: rescored},
    ]
    assert dialogue.same_history(held)
    assert not dialogue.same_history([held[0], {**held[1], RETRIEVALS_KEY: []}])
    assert not dialogue.same_history([held[0], {**held[1], "content": "Ada."}])
    assert not dialogue.same_history([])


def test_same_history_accepts_any_passages_where_the_dialogue_records_none() -> None:
    dialogue = Dialogue.from_turns([Turn("user", "q"), Turn("assistant", "Ada, of Paris."), Turn("user", "?")])
    held = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Ada, of Paris.", RETRIEVALS_KEY: PAST}]
    assert dialogue.same_history(held)


def test_open_loads_the_history_under_the_dialogues_system_prompt(tiny_model: OneGenModel) -> None:
    dialogue = Dialogue.from_turns(
        [Turn("system", "Be brief."), Turn("user", "Hi"), Turn("assistant", "Hello there.", []), Turn("user", "Who?")]
    )
    session = dialogue.open(tiny_model, retrieval="never", system_prompt="Ignored.", max_new_tokens=1)
    assert dialogue.same_history(session.messages)
    session.ask(dialogue.message)
    rendered = tiny_model.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *dialogue.history, {"role": "user", "content": "Who?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    expected = tiny_model.text.markup(rendered)
    assert session.token_ids[: len(expected)] == expected


def test_open_keeps_the_given_system_prompt_when_the_dialogue_has_none(tiny_model: OneGenModel) -> None:
    dialogue = Dialogue.from_turns([Turn("user", "Who?")])
    session = dialogue.open(tiny_model, retrieval="never", system_prompt="Be brief.", max_new_tokens=1)
    session.ask(dialogue.message)
    rendered = tiny_model.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    expected = tiny_model.text.markup(rendered)
    assert session.token_ids[: len(expected)] == expected
