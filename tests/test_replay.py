"""A session rebuilt from messages holds the tokens the live session held, retrievals included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from onegen_integrations.model import OneGenModel
from onegen_integrations.replay import RETRIEVALS_KEY, ReplayFormatError, retrievals_from_json, retrievals_to_json
from tests.conftest import ListRetriever

DOCS = ["Ada was born in Paris.", "Bob lives in Rome by the river.", "Cleo built a bridge in 1901."]


def scripted(model: OneGenModel, *pieces: str | int):
    """A logits processor making every answer the same token script (text pieces and token ids)."""
    script = [t for piece in pieces for t in ([piece] if isinstance(piece, int) else model.tokenize(piece))]
    script.append(model.tokenizer.eos_token_id)

    def processor(generated, logits):
        forced = torch.full_like(logits, float("-inf"))
        forced[script[min(len(generated), len(script) - 1)]] = 0.0
        return forced

    return processor


def live_then_replayed(model: OneGenModel, processor, history_retrievals: bool):
    retriever = ListRetriever(model, DOCS)
    live = model.session(retriever, retrieval="auto", logits_processor=processor)
    first = live.ask("Who is Ada?")
    follow_up = live.ask("Where was she born?")
    replayed = model.session(retriever, retrieval="auto", logits_processor=processor)
    answer = {"role": "assistant", "content": first.text}
    if history_retrievals:
        answer[RETRIEVALS_KEY] = retrievals_to_json(first.retrievals)
    replayed.load_history([{"role": "user", "content": "Who is Ada?"}, answer])
    return live, follow_up, replayed, replayed.ask("Where was she born?")


@pytest.mark.parametrize("history_retrievals", [True, False], ids=["with metadata", "decided again"])
def test_a_replayed_history_feeds_the_live_sessions_tokens_and_queries(tiny_model, history_retrievals) -> None:
    processor = scripted(tiny_model, tiny_model.query_token_id, " She was born in Paris.")

    live, follow_up, replayed, replayed_follow_up = live_then_replayed(tiny_model, processor, history_retrievals)

    assert replayed.token_ids == live.token_ids
    np.testing.assert_allclose(replayed_follow_up.retrievals[0].query.vector, follow_up.retrievals[0].query.vector, atol=1e-5)
    assert replayed_follow_up.text == follow_up.text


def test_a_retrieval_in_the_middle_of_an_answer_is_put_back_at_its_offset(tiny_model) -> None:
    processor = scripted(tiny_model, " Ada", tiny_model.query_token_id, " was born in Paris.")

    live, follow_up, replayed, replayed_follow_up = live_then_replayed(tiny_model, processor, history_retrievals=True)

    assert [r.offset for r in follow_up.retrievals] == [len(" Ada")]
    assert replayed.token_ids == live.token_ids
    assert replayed_follow_up.text == follow_up.text


def test_history_from_elsewhere_is_not_given_a_retrieval_the_model_would_not_make(tiny_model) -> None:
    processor = scripted(tiny_model, " Hello.")  # never [RQ]
    retriever = ListRetriever(tiny_model, DOCS)
    session = tiny_model.session(retriever, retrieval="auto", logits_processor=processor)

    session.load_history([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}])
    session.ask("How are you?")

    assert tiny_model.query_token_id not in session.token_ids and retriever.queries == []


def test_the_retrievals_json_round_trips_and_bad_values_say_what_is_wrong(tiny_model) -> None:
    processor = scripted(tiny_model, tiny_model.query_token_id, " In Paris.")
    done = tiny_model.session(ListRetriever(tiny_model, DOCS), retrieval="auto", logits_processor=processor).ask("Ada?")

    past = retrievals_from_json(retrievals_to_json(done.retrievals))

    assert [(p.offset, [h.id for h in p.hits]) for p in past] == [(0, [done.retrievals[0].hits[0].id])]
    for bad in ({"offset": 0}, [{"hits": []}], [{"offset": 0, "hits": [{"id": "x"}]}]):
        with pytest.raises(ReplayFormatError, match=RETRIEVALS_KEY):
            retrievals_from_json(bad)


def test_session_messages_rebuild_the_same_cache(tiny_model) -> None:
    processor = scripted(tiny_model, " Ada", tiny_model.query_token_id, " was born in Paris.")
    retriever = ListRetriever(tiny_model, DOCS)
    live = tiny_model.session(retriever, retrieval="auto", logits_processor=processor)
    live.ask("Who is Ada?")
    live.ask("Where was she born?")

    rebuilt = tiny_model.session(retriever, retrieval="auto", logits_processor=processor)
    rebuilt.load_history(live.messages)
    rebuilt.ask("And Bob?")
    live.ask("And Bob?")

    assert rebuilt.token_ids == live.token_ids
    assert rounded(rebuilt.messages) == rounded(live.messages)  # scores differ in the 7th digit: batched forwards


def rounded(messages: list[dict]) -> list[dict]:
    return json.loads(json.dumps(messages), parse_float=lambda x: round(float(x), 4))


def test_a_stream_left_after_its_retrieval_keeps_that_retrieval_in_the_history(tiny_model) -> None:
    processor = scripted(tiny_model, tiny_model.query_token_id, " She was born in Paris.")
    session = tiny_model.session(ListRetriever(tiny_model, DOCS), retrieval="auto", logits_processor=processor)
    stream = session.send("Who is Ada?")
    next(stream)  # the retrieval
    next(stream)  # one token of the answer
    stream.close()

    assert session.messages[1][RETRIEVALS_KEY][0]["hits"] and tiny_model.query_token_id in session.token_ids
