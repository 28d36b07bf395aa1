"""`Conversations`: which cached session answers a request, and what the caps drop (tiny models)."""

from __future__ import annotations

import threading
import time

import pytest

from onegen_integrations.conversations import Conversations, Lease
from onegen_integrations.dialogue import Dialogue
from onegen_integrations.model import OneGenModel


def conversations(model: OneGenModel, *, max_conversations: int = 8, max_tokens: int = 100_000) -> Conversations:
    return Conversations(
        lambda dialogue: dialogue.open(model, retrieval="never", max_new_tokens=6),
        max_conversations=max_conversations,
        max_tokens=max_tokens,
    )


def answer(cache: Conversations, dialogue: Dialogue, conversation_id: str | None = None) -> tuple[Lease, str, int]:
    """Lease, answer `dialogue.message`, give back: the lease, the answer and the tokens fed."""
    lease = cache.lease(dialogue, conversation_id)
    try:
        done = lease.session.ask(dialogue.message)
    finally:
        cache.give_back(lease)
    return lease, done.text, done.usage.processed_tokens


def follow_up(history: list[dict], reply: str, message: str) -> Dialogue:
    return Dialogue(message, [*history, {"role": "assistant", "content": reply}])


def test_a_follow_up_continues_the_cached_session_and_feeds_only_the_new_turn(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model)
    first, reply, _ = answer(cache, Dialogue("alpha beta"), "c")
    assert first.reuse == "new"
    second, _, fed = answer(cache, follow_up([{"role": "user", "content": "alpha beta"}], reply, "gamma"), "c")
    assert second.reuse == "continued" and second.session is first.session
    rebuilt, _, fed_rebuilt = answer(cache, follow_up([{"role": "user", "content": "alpha beta"}], reply, "gamma"), "other")
    assert rebuilt.reuse == "rebuilt"
    assert fed < fed_rebuilt - tiny_model.count_tokens("alpha beta")


def test_without_an_id_the_history_finds_its_conversation(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model)
    first, reply, _ = answer(cache, Dialogue("alpha beta"))
    again, _, _ = answer(cache, follow_up([{"role": "user", "content": "alpha beta"}], reply, "gamma"))
    assert (again.conversation_id, again.reuse) == (first.conversation_id, "continued")
    other, _, _ = answer(cache, follow_up([{"role": "user", "content": "alpha beta"}], reply + " edited", "gamma"))
    assert other.conversation_id != first.conversation_id and other.reuse == "rebuilt"


def test_an_edited_history_rebuilds_and_answers_as_a_fresh_conversation(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model)
    _, reply, _ = answer(cache, Dialogue("alpha beta"), "c")
    edited = follow_up([{"role": "user", "content": "alpha delta"}], reply, "gamma")
    lease, text, _ = answer(cache, edited, "c")
    assert lease.reuse == "rebuilt"
    assert text == answer(conversations(tiny_model), edited)[1]
    assert [m["content"] for m in lease.session.messages][:2] == ["alpha delta", reply]


def test_turns_the_cache_lacks_are_added_to_it(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model)
    first, reply, _ = answer(cache, Dialogue("alpha beta"), "c")
    history = [{"role": "user", "content": "alpha beta"}, {"role": "assistant", "content": reply}]
    longer = Dialogue("epsilon", [*history, {"role": "user", "content": "gamma"}, {"role": "assistant", "content": "delta"}])
    lease, text, _ = answer(cache, longer, "c")
    assert lease.reuse == "extended" and lease.session is first.session
    assert text == answer(conversations(tiny_model), longer)[1]


def test_the_least_recently_used_idle_conversation_is_dropped_first(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model, max_conversations=2)
    replies = {name: answer(cache, Dialogue(f"about {name}"), name)[1] for name in ("a", "b")}
    answer(cache, follow_up([{"role": "user", "content": "about a"}], replies["a"], "more"), "a")  # a is now the newer
    answer(cache, Dialogue("about c"), "c")
    assert len(cache) == 2 and cache.evictions == 1
    assert answer(cache, follow_up([{"role": "user", "content": "about b"}], replies["b"], "more"), "b")[0].reuse == "rebuilt"


def test_cached_tokens_stay_within_the_cap(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model, max_tokens=60)
    for name in "abcdef":
        answer(cache, Dialogue(f"tell me about {name} " * 3), name)
        assert cache.cached_tokens <= 60
    assert cache.evictions >= 3


def test_a_conversation_answering_is_never_dropped_and_a_second_request_waits_for_it(tiny_model: OneGenModel) -> None:
    cache = conversations(tiny_model, max_conversations=1)
    held = cache.lease(Dialogue("alpha"), "a")
    answer(cache, Dialogue("beta"), "b")
    assert cache.evictions == 1 and len(cache) == 1  # b went, although a is the older one
    reply = held.session.ask("alpha").text
    waited: list[Lease] = []
    waiter = threading.Thread(target=lambda: waited.append(cache.lease(follow_up([{"role": "user", "content": "alpha"}], reply, "more"), "a")))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive() and not waited
    cache.give_back(held)
    waiter.join(timeout=10)
    assert waited and waited[0].session is held.session and waited[0].reuse == "continued"
    cache.give_back(waited[0])


def test_a_failed_first_lease_keeps_nothing(tiny_model: OneGenModel) -> None:
    def refuse(_: Dialogue) -> None:
        raise RuntimeError("no session")

    cache = Conversations(refuse, max_conversations=2, max_tokens=1000)
    with pytest.raises(RuntimeError, match="no session"):
        cache.lease(Dialogue("alpha"), "a")
    assert len(cache) == 0
