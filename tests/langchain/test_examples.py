"""The LangChain examples run start to finish on the default model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from onegen_integrations.model import OneGenModel

EXAMPLES = Path(__file__).parents[2] / "examples"
CONVERSATION = Path(__file__).parents[2] / "onegen_integrations" / "demo" / "conversation.txt"
sys.path.insert(0, str(EXAMPLES))

import langchain_agent  # noqa: E402
import langchain_chatbot  # noqa: E402
import langchain_rag  # noqa: E402

pytestmark = pytest.mark.default_model


def test_the_rag_example_streams_an_answer_after_retrieving_from_the_demo_corpus(
    default_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = langchain_rag.main(["Who founded the Varenne Institute?", "--max-tokens", "8"])
    out = capsys.readouterr().out
    assert out.startswith("[retrieved: ") and answer and answer in out


def test_the_chatbot_example_answers_the_scripted_conversation_with_one_retrieval_per_turn(
    default_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = langchain_chatbot.main(["--max-tokens", "8"])
    out = capsys.readouterr().out
    questions = [line for line in CONVERSATION.read_text().splitlines() if line.strip()]
    assert len(answers) == len(questions) and all(answers)
    for question in questions:
        assert f"> {question}\n[retrieved: " in out


def test_the_agent_example_answers_each_question_in_one_conversation(
    default_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = langchain_agent.main(
        ["Where is order A-1017?", "Who founded the Varenne Institute?", "--max-tokens", "8"]
    )
    out = capsys.readouterr().out
    assert [m.type for m in messages if m.type == "human"] == ["human", "human"] and messages[-1].type == "ai"
    assert "> Where is order A-1017?\n" in out and "> Who founded the Varenne Institute?\n" in out


def test_the_agent_examples_tools_compute_and_look_up() -> None:
    assert langchain_agent.calculator.invoke({"expression": "17 * 23 - 1"}) == "390"
    assert "only numbers" in langchain_agent.calculator.invoke({"expression": "__import__('os')"})
    assert json.loads(langchain_agent.order_status.invoke({"order_id": "a-1017"}))["status"] == "shipped"
    assert json.loads(langchain_agent.order_status.invoke({"order_id": "Z-1"}))["status"] == "unknown order"
