"""The chat page at `/`, driven in a real headless Chromium: a two-turn demo conversation streams token by
token, shows each retrieval's sources, keeps the server's conversation id, and "New conversation" starts over.

Set ONEGEN_SCREENSHOT=PATH to also save a screenshot of the page after the two turns (docs/images/chat-page.png).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from onegen_integrations.ingest import DEMO

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")

pytestmark = pytest.mark.default_model

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TURN_TIMEOUT_MS = 180_000
"""An answer may take ~10 s on 2 CPU cores; leave room for a slow machine."""

# Records, inside the page, every change of the latest answer: its text length and its data-state.
# A MutationObserver sees each streamed token as it lands, which polling from Python could miss.
OBSERVE_ANSWERS = """() => {
  window.answerChanges = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll('#messages .answer');
    const answer = answers[answers.length - 1];
    if (!answer) return;
    window.answerChanges.push({turn: answers.length - 1, state: answer.dataset.state,
                               length: answer.querySelector('.answer-text').textContent.length});
  }).observe(document.querySelector('#messages'),
             {childList: true, subtree: true, characterData: true, attributes: true});
}"""


@dataclass
class ChatRun:
    """What the browser saw while the demo conversation's first two turns were typed into the page."""

    page: Any
    turns: list[dict[str, Any]]
    """Per turn: the gold message and document id, the answer's final state and text, and its source ids."""
    answer_changes: list[dict[str, Any]]
    chat_requests: list[Any] = field(default_factory=list)
    chat_responses: list[Any] = field(default_factory=list)
    request_urls: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


def wait_for_answer(page: Any, count: int) -> None:
    """Wait until `count` answers have left the streaming state (done, or error)."""
    page.wait_for_function(
        "n => document.querySelectorAll('#messages .answer:not([data-state=\"streaming\"])').length >= n",
        arg=count,
        timeout=TURN_TIMEOUT_MS,
    )


@pytest.fixture(scope="module")
def chat(server: Any) -> Iterator[ChatRun]:
    """Open the page, type the demo's first two turns (a question and a pronoun follow-up), record everything."""
    gold = json.loads(DEMO.joinpath("conversation_gold.json").read_text())[:2]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.set_default_timeout(TURN_TIMEOUT_MS)
            run = ChatRun(page=page, turns=[], answer_changes=[])

            def on_request(request: Any) -> None:
                run.request_urls.append(request.url)
                if request.method == "POST" and request.url.endswith("/v1/chat/completions"):
                    run.chat_requests.append(request)

            def on_response(response: Any) -> None:
                if response.url.endswith("/v1/chat/completions"):
                    run.chat_responses.append(response)

            page.on("pageerror", lambda error: run.page_errors.append(str(error)))
            page.on("request", on_request)
            page.on("response", on_response)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelector('#model').textContent.startsWith('model:')")
            page.evaluate(OBSERVE_ANSWERS)
            for number, turn in enumerate(gold, start=1):
                page.wait_for_selector("#send:not([disabled])")
                page.fill("#input", turn["message"])
                page.press("#input", "Enter")
                wait_for_answer(page, number)
                answer = page.locator("#messages .answer").nth(number - 1)
                run.turns.append(
                    {
                        **turn,
                        "state": answer.get_attribute("data-state"),
                        "text": answer.inner_text(),
                        "source_ids": answer.locator(".sources .source").evaluate_all(
                            "els => els.map(e => e.dataset.id)"
                        ),
                    }
                )
            run.answer_changes = page.evaluate("window.answerChanges")
            if os.environ.get("ONEGEN_SCREENSHOT"):
                target = Path(os.environ["ONEGEN_SCREENSHOT"])
                target.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(target))
            yield run
        finally:
            browser.close()


def test_both_turns_finish_without_errors(chat: ChatRun) -> None:
    for turn in chat.turns:
        assert turn["state"] == "done", f"turn {turn['message']!r} ended {turn['state']}: {turn['text']}"
    assert chat.page_errors == []


def test_answers_stream_token_by_token(chat: ChatRun) -> None:
    for index, turn in enumerate(chat.turns):
        streaming_lengths = {
            change["length"]
            for change in chat.answer_changes
            if change["turn"] == index and change["state"] == "streaming" and change["length"] > 0
        }
        assert len(streaming_lengths) >= 2, f"answer to {turn['message']!r} did not grow while streaming"


def test_each_turn_shows_its_gold_source(chat: ChatRun) -> None:
    for turn in chat.turns:
        assert turn["gold_id"] in turn["source_ids"], f"{turn['message']!r} showed sources {turn['source_ids']}"


def test_second_turn_sends_back_the_conversation_id_and_history(chat: ChatRun, server: Any) -> None:
    first, second = chat.chat_requests[:2]
    assert first.post_data_json["model"] == server.model_id
    assert first.post_data_json["stream"] is True
    assert "x-conversation-id" not in first.headers
    conversation_id = chat.chat_responses[0].headers["x-conversation-id"]
    assert second.headers["x-conversation-id"] == conversation_id
    history = second.post_data_json["messages"]
    assert [message["role"] for message in history] == ["user", "assistant", "user"]
    assert history[1]["onegen_retrievals"][0]["hits"][0]["id"] == chat.turns[0]["source_ids"][0]


def test_page_makes_no_requests_beyond_its_server(chat: ChatRun, server: Any) -> None:
    outside = [url for url in chat.request_urls if not url.startswith(server.url)]
    assert outside == []


def test_new_conversation_clears_the_page_and_forgets_the_id(chat: ChatRun) -> None:
    page = chat.page
    page.click("#new")
    assert page.locator("#messages > *").count() == 0
    page.fill("#input", chat.turns[0]["message"])
    page.click("#send")
    wait_for_answer(page, 1)
    third = chat.chat_requests[2]
    assert "x-conversation-id" not in third.headers
    assert [message["role"] for message in third.post_data_json["messages"]] == ["user"]
