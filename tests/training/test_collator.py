"""Sequences match the runtime's chat pieces, and labels cover exactly the learned tokens."""

from __future__ import annotations

import pytest
from onegen_training.collator import IGNORE, OneGenCollator
from onegen_training.data import Record
from transformers import AutoTokenizer

from onegen_integrations.chat_format import ChatFormat
from onegen_integrations.config import OneGenConfig
from onegen_integrations.tools import ToolCall, ToolSpec, result_text, tools_prompt
from tests.conftest import make_tiny_model

DOCS = {"a": "Ada wrote the first program.", "b": "Bob built a bridge.", "c": "Cy sailed."}


@pytest.fixture(scope="module")
def tokenizer() -> AutoTokenizer:
    return make_tiny_model().tokenizer


def dialogue() -> Record:
    return Record.model_validate({"messages": [
        {"role": "user", "content": "Who wrote the first program?"},
        {"role": "assistant", "content": "[RQ] Ada did.", "retrievals": [{"positives": ["a"], "negatives": ["b"]}]},
        {"role": "user", "content": "And the bridge?"},
        {"role": "assistant", "content": "It was [RQ] Bob.", "retrievals": [{"positives": ["b"]}]},
    ]})


def test_sequence_is_built_from_the_runtime_chat_pieces(tokenizer) -> None:
    config = OneGenConfig()
    collator = OneGenCollator(tokenizer, config, DOCS, standalone_queries=False)
    fmt = ChatFormat(tokenizer, config.system_prompt)
    record = dialogue()
    first, second = record.messages[1], record.messages[3]
    rq, eos = tokenizer.convert_tokens_to_ids("[RQ]"), tokenizer.eos_token_id
    expected = (
        fmt.preamble()
        + fmt.user_turn([], "Who wrote the first program?")
        + [rq] + fmt.text.markup(f"<paragraph>{DOCS['a']}</paragraph>") + fmt.text.markup(" Ada did.") + [eos]
        + fmt.assistant_close(ended_with_eos=True)
        + fmt.user_turn([{"role": "user", "content": "Who wrote the first program?"}, {"role": "assistant", "content": first.content}], "And the bridge?")
        + fmt.text.markup("It was ") + [rq] + fmt.text.markup(f"<paragraph>{DOCS['b']}</paragraph>") + fmt.text.markup(" Bob.") + [eos]
        + fmt.assistant_close(ended_with_eos=True)
    )
    example = collator.encode(record)
    assert example.input_ids == expected
    assert [example.input_ids[q.position] for q in example.queries] == [rq, rq]
    assert second.retrievals[0].positives == example.queries[1].positives


def test_labels_cover_answers_rq_and_eos_only(tokenizer) -> None:
    collator = OneGenCollator(tokenizer, OneGenConfig(), DOCS, standalone_queries=False)
    example = collator.encode(dialogue())
    learned = [tokenizer.decode([t]) for t, label in zip(example.input_ids, example.labels) if label != IGNORE]
    assert "".join(learned) == "[RQ] Ada did.<|im_end|>It was [RQ] Bob.<|im_end|>"
    for query in example.queries:  # the <paragraph> opener after [RQ] is supplied by the engine
        assert example.labels[query.position] != IGNORE
        assert example.labels[query.position + 1] == IGNORE
        assert example.input_ids[query.position + 1] == tokenizer.convert_tokens_to_ids("<paragraph>")
    assert all(label in (IGNORE, token) for token, label in zip(example.input_ids, example.labels))


def test_batch_holds_each_document_once_with_masks(tokenizer) -> None:
    collator = OneGenCollator(tokenizer, OneGenConfig(), DOCS)
    batch = collator([collator.encode(dialogue()), collator.encode(dialogue())])
    # 4 [RQ] + 4 standalone rows; documents a, b once each
    assert batch["positive_mask"].shape == (8, 2)
    assert batch["row_ids"].shape[0] == 2 + 4
    assert batch["positive_mask"].sum(dim=1).tolist() == [1] * 8
    assert not (batch["positive_mask"] & batch["negative_mask"]).any()
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(collator.encode(dialogue()).input_ids)] * 2
    rd = tokenizer.convert_tokens_to_ids("[RD]")
    last = batch["row_mask"][:2].sum(dim=1) - 1
    assert batch["row_ids"][[0, 1], last].tolist() == [rd, rd]


def test_long_documents_keep_their_rd_token(tokenizer) -> None:
    collator = OneGenCollator(tokenizer, OneGenConfig(), {"x": "word " * 500}, max_doc_tokens=32)
    tokens = collator.document_tokens("x")
    assert len(tokens) == 32 and tokens[-1] == tokenizer.convert_tokens_to_ids("[RD]")


def test_hard_negatives_are_capped_to_the_hardest_first(tokenizer) -> None:
    record = Record.model_validate({"messages": [
        {"role": "user", "content": "Who wrote the first program?"},
        {"role": "assistant", "content": "[RQ] Ada.", "retrievals": [{"positives": ["a"], "negatives": ["b", "c"]}]},
    ]})
    columns = {}
    for cap in (None, 1, 0):
        collator = OneGenCollator(tokenizer, OneGenConfig(), DOCS, in_batch_negatives=False, hard_negatives=cap)
        batch = collator([collator.encode(record)])
        columns[cap] = batch["row_ids"].shape[0] - 1, batch["negative_mask"].sum(dim=1).tolist()
    # documents (rows minus the standalone query row) and each query's negatives
    assert columns == {None: (3, [2, 2]), 1: (2, [1, 1]), 0: (1, [0, 0])}


def test_a_record_with_tools_offers_them_in_its_system_prompt_and_learns_the_call(tokenizer) -> None:
    weather = {"name": "get_weather", "description": "Weather now.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    call = ToolCall("get_weather", {"city": "Oslo"}).text()
    record = Record.model_validate({"tools": [{"type": "function", "function": weather}], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": call},
        {"role": "user", "content": result_text("4 °C", "get_weather")},
        {"role": "assistant", "content": "It is 4 °C."},
    ]})
    config = OneGenConfig()
    collator = OneGenCollator(tokenizer, config, DOCS, standalone_queries=False)
    example = collator.encode(record)
    offered = ChatFormat(tokenizer, tools_prompt(config.system_prompt, [ToolSpec.from_openai(weather)]))
    assert example.input_ids[: len(offered.preamble())] == offered.preamble()
    learned = "".join(tokenizer.decode([t]) for t, label in zip(example.input_ids, example.labels) if label != IGNORE)
    assert learned == f"{call}<|im_end|>It is 4 °C.<|im_end|>"
    plain = collator.encode(dialogue())
    assert plain.input_ids[: len(collator.format.preamble())] == collator.format.preamble()
    assert collator([example, plain])["held_rows"].tolist() == [False, True]  # the generation anchor holds plain records
