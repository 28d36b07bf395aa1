"""Second-round negatives: a trained model's own top-ranked non-positives, hardest first."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from onegen_training.cli import main
from onegen_training.data import load_documents
from onegen_training.negatives import by_model

from tests.conftest import ListRetriever


def test_by_model_skips_positives_and_orders_hardest_first() -> None:
    documents = torch.eye(4)
    queries = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1, 0.5, 0.0], [0.0, 0.2, 0.3, 1.0]]), dim=1)
    assert by_model(queries, [[0], [3, 2]], documents, 2) == [[2, 1], [1, 0]]
    assert by_model(queries, [[0, 1, 2], [3]], documents, 2) == [[3], [2, 1]]


def test_mined_negatives_are_what_the_trained_model_ranks_above_the_rest(learned: dict, facts: Path, tmp_path: Path) -> None:
    from onegen_integrations.model import OneGenModel

    out = tmp_path / "mined.jsonl"
    argv = ["mine", "--model", str(learned["dir"]), "--docs", str(facts / "docs.jsonl"),
            "--records", str(facts / "train.jsonl"), "--out", str(out), "--negatives", "2", "--chunk-tokens", "64"]
    assert main(argv) == 0
    before = [json.loads(line) for line in (facts / "train.jsonl").read_text().splitlines()]
    after = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in after] == [r["id"] for r in before]

    docs = load_documents(facts / "docs.jsonl")
    ids = list(docs)
    model = OneGenModel.load(learned["dir"], device="cpu")
    retriever = ListRetriever(model, [docs[i] for i in ids])
    changed = 0
    for old, new in zip(before, after):
        assert new["messages"][0] == old["messages"][0]
        assert new["messages"][1]["content"] == old["messages"][1]["content"]
        retrieval = new["messages"][1]["retrievals"][0]
        positive = old["messages"][1]["retrievals"][0]["positives"]
        assert retrieval["positives"] == positive
        # the same [RQ] vector, computed by the runtime over its KV cache instead of teacher-forced
        done = model.session(retriever, retrieval="always", max_new_tokens=1, max_retrievals=1, k=3).ask(old["messages"][0]["content"])
        ranked = [ids[int(hit.id)] for hit in done.retrievals[0].hits]
        assert retrieval["negatives"] == [d for d in ranked if d not in positive][:2]
        changed += retrieval["negatives"] != old["messages"][1]["retrievals"][0]["negatives"]
    assert changed >= 8  # the random overlap-free negatives of the fixture are mostly replaced
