"""`onegen eval`: metrics computed by hand, held-out cases read from converter output, and the runner on a tiny model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from onegen_evaluation.datasets import load_eval_set
from onegen_evaluation.metrics import exact_match, f1_score, normalize_answer, recall_at_k, sign_test
from onegen_evaluation.runner import (
    Scores,
    System,
    SystemResult,
    format_paired,
    format_table,
    gold_query,
    right_article,
    run_system,
)

from onegen_integrations.cli import main

DOCS = {
    "Ada#0": "Ada Lovelace wrote the first published program in 1843.",
    "Ada#1": "She was the daughter of the poet Lord Byron.",
    "Bridge#0": "The Selby bridge spans the river Ouse and opened in 1791.",
    "Other#0": "An article that no case is about.",
}


def _write(directory: Path, records: list[dict]) -> None:
    directory.mkdir(parents=True)
    (directory / "docs.jsonl").write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in DOCS.items()))
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _turn(question: str, answer: str, doc: str, original: str | None = None) -> list[dict]:
    user = {"role": "user", "content": question, **({"original": original} if original else {})}
    return [user, {"role": "assistant", "content": f"[RQ] {answer}", "retrievals": [{"positives": [doc]}]}]


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "squad", [
        {"id": "q1", "group": "Ada", "messages": _turn("What did Ada Lovelace write?", "the first published program", "Ada#0")},
        {"id": "q2", "group": "Ada", "messages": _turn("Who was Ada's father?", "Lord Byron", "Ada#1")},
        {"id": "q3", "group": "Bridge", "messages": _turn("When did the Selby bridge open?", "1791", "Bridge#0")},
    ])
    _write(tmp_path / "dialogue", [
        {"id": "d1", "group": "Ada", "messages": _turn("What did Ada Lovelace write?", "the first published program", "Ada#0")
         + _turn("Who was her father?", "Lord Byron", "Ada#1", original="Who was Ada Lovelace's father?")},
        {"id": "d2", "group": "Bridge", "messages": _turn("When did the Selby bridge open?", "1791", "Bridge#0")},
    ])
    return tmp_path


def test_normalize_answer_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"


def test_exact_match_accepts_any_gold_answer() -> None:
    assert exact_match("the Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Panthers", ["Denver Broncos"]) == 0.0


def test_f1_is_token_overlap() -> None:
    # prediction 3 tokens, gold 2, 2 shared: precision 2/3, recall 1, F1 0.8
    assert f1_score("Denver Broncos team", ["Denver Broncos"]) == pytest.approx(0.8)
    assert f1_score("Panthers", ["Denver Broncos"]) == 0.0
    assert f1_score("x", ["Panthers", "x"]) == 1.0


def test_recall_at_k_looks_at_the_first_k() -> None:
    assert recall_at_k(["a", "b", "c"], ["b"], 1) == 0.0
    assert recall_at_k(["a", "b", "c"], ["b"], 2) == 1.0
    assert recall_at_k([], ["b"], 5) == 0.0


def test_eval_set_keeps_chosen_articles_round_robin(eval_dir: Path) -> None:
    data = load_eval_set(eval_dir, articles=2, single=2, dialogues=5)
    assert [c.id for c in data.single] == ["q1", "q3"]  # one per article before a second from either
    assert set(data.docs) == {"Ada#0", "Ada#1", "Bridge#0"}  # "Other" has no dialogue: not in the corpus
    follow_up = data.dialogues[0].turns[1]
    assert follow_up.message == "Who was her father?" and follow_up.original == "Who was Ada Lovelace's father?"


def test_distractors_add_every_other_paragraph_but_no_cases(eval_dir: Path) -> None:
    chosen = load_eval_set(eval_dir, articles=2, single=2, dialogues=5)
    widened = load_eval_set(eval_dir, articles=2, single=2, dialogues=5, distractors=True)
    assert set(widened.docs) == {"Ada#0", "Ada#1", "Bridge#0", "Other#0"}
    assert widened.single == chosen.single and widened.dialogues == chosen.dialogues


def test_missing_data_names_the_command_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="make eval-data"):
        load_eval_set(tmp_path)


def test_gold_system_retrieves_the_gold_paragraph_first(tiny_model, eval_dir: Path) -> None:
    data = load_eval_set(eval_dir)
    ids = list(data.docs)
    vectors = tiny_model.embed_documents([data.docs[i] for i in ids])
    result = run_system(System("gold", tiny_model, vectors, "always", gold_query(vectors, ids)), data, max_new_tokens=2)
    assert result.single.turns == 3 and result.dialogue.turns == 3 and result.follow_ups.turns == 1
    assert result.single.recall_at_1 == 1.0 and result.dialogue.recall_at_5 == 1.0
    assert result.single.retrieved == 1.0


def test_prompted_system_ranks_with_its_own_query_and_answers_without_onegen_tokens(tiny_model, eval_dir: Path) -> None:
    data = load_eval_set(eval_dir)
    ids = list(data.docs)
    vectors = tiny_model.embed_documents([data.docs[i] for i in ids])
    system = System("base-gold", tiny_model, vectors, "never", gold_query(vectors, ids), prompted=True)
    result = run_system(system, data, max_new_tokens=3, max_passage_tokens=4)
    assert result.single.recall_at_1 == 1.0 and result.follow_ups.recall_at_1 == 1.0
    assert all(e["ranking"][0] == e["gold"][0] for e in result.examples)
    assert not any("[RQ]" in e["answer"] or "<paragraph>" in e["answer"] for e in result.examples)


def test_one_pass_system_scores_every_turn_and_formats_a_table(tiny_model, eval_dir: Path) -> None:
    data = load_eval_set(eval_dir)
    vectors = tiny_model.embed_documents(list(data.docs.values()))
    result = run_system(System("base", tiny_model, vectors, "always"), data, max_new_tokens=2)
    assert 0.0 <= result.single.recall_at_1 <= result.single.recall_at_5 <= 1.0
    assert len(result.examples) == 6 and all(len(e["ranking"]) == 3 for e in result.examples)
    table = format_table([result]).splitlines()
    assert len(table) == 3 and table[2].startswith("| base |") and table[2].count("|") == table[0].count("|")


def test_needless_retrievals_are_counted_only_where_the_model_decides(tiny_model, eval_dir: Path) -> None:
    data = dataclasses.replace(load_eval_set(eval_dir), chat=("Hi", "Thanks", "Bye"))
    vectors = tiny_model.embed_documents(list(data.docs.values()))
    forced = run_system(System("forced", tiny_model, vectors, "always"), data, max_new_tokens=2)
    assert forced.needless_retrievals is None and "| - |" in format_table([forced])
    head = tiny_model.hf_model.get_output_embeddings()  # a model that always asks: a huge bias on [RQ]
    head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
    with torch.no_grad():
        head.bias[tiny_model.query_token_id] = 1e4
    auto = run_system(System("auto", tiny_model, vectors, "auto"), data, max_new_tokens=2)
    assert auto.needless_retrievals == 1.0 and len(auto.examples) == 6


def _hits(name: str, turns: list[tuple[str, int, float, float, str]]) -> SystemResult:
    """Scored turns whose gold paragraph is `A#0`; `first` is the id ranked first ("" for none)."""
    examples = [{"case": c, "turn": t, "recall_at_1": r1, "recall_at_5": r5, "gold": ["A#0"], "ranking": [first] if first else []}
                for c, t, r1, r5, first in turns]
    return SystemResult(name, "", Scores(), Scores(), Scores(), 0.0, examples)


def test_sign_test_gives_the_binomial_tail_of_the_rarer_side_twice() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 3) == 1.0
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(1, 9) == sign_test(9, 1) == pytest.approx(2 * 11 / 1024)
    assert sign_test(47, 43) == pytest.approx(0.752, abs=1e-3)


def test_paired_table_counts_turns_each_system_alone_got_right() -> None:
    minilm = _hits("minilm-raw", [("q", 0, 1, 1, "A#0"), ("d", 0, 0, 1, "A#1"), ("d", 1, 0, 0, "B#0"),
                                  ("d", 2, 1, 1, "A#0"), ("e", 1, 0, 1, "B#3")])
    onegen = _hits("onegen", [("q", 0, 0, 1, "A#2"), ("d", 0, 1, 1, "A#0"), ("d", 1, 1, 1, "A#0"),
                              ("d", 2, 1, 1, "A#0"), ("e", 1, 0, 0, "")])
    gold = _hits("onegen-gold", [("q", 0, 1, 1, "A#0")])
    lines = format_paired([minilm, onegen, gold]).splitlines()
    assert len(lines) == 3  # header, rule, onegen (the gold system is not a retriever)
    assert lines[2] == (
        "| onegen | 1 won, 1 lost of 2, p 1.00 | 0 won, 0 lost of 2, p 1.00 "
        "| 1 won, 0 lost of 3, p 1.00 | 1 won, 1 lost of 3, p 1.00 | 1 won, 0 lost of 3, p 1.00 |"
    )
    assert format_paired([onegen]) == ""
    far_ahead = _hits("onegen", [(f"c{i}", 1, 1, 1, "A#0") for i in range(12)])
    behind = _hits("minilm-raw", [(f"c{i}", 1, 0, 0, "B#0") for i in range(12)])
    assert format_paired([behind, far_ahead]).splitlines()[2].endswith("| 12 won, 0 lost of 12, p < 0.001 |")
    eight = _hits("onegen", [(f"c{i}", 1, 1, 1, "A#0") for i in range(8)])  # 2/256: p 0.0078
    assert format_paired([behind, eight]).splitlines()[2].endswith("| 8 won, 0 lost of 8, p 0.008 |")


def test_right_article_looks_at_the_first_ranked_paragraph_only() -> None:
    assert right_article({"gold": ["Normans#5"], "ranking": ["Normans#3", "Huguenot#1"]}) == 1.0
    assert right_article({"gold": ["Normans#5"], "ranking": ["Huguenot#1", "Normans#5"]}) == 0.0
    assert right_article({"gold": ["Normans#5"], "ranking": []}) == 0.0


def test_eval_command_prints_a_table_and_merges_results(tiny_model, eval_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results.json"
    args = ["eval", "--data", str(eval_dir), "--max-new-tokens", "2", "--out", str(out)]
    assert main([*args, "--systems", "onegen-gold"], model=tiny_model) == 0
    assert main([*args, "--systems", "onegen"], model=tiny_model) == 0
    printed = capsys.readouterr().out
    assert "| onegen |" in printed and "| onegen-gold |" in printed
    assert set(json.loads(out.read_text())) == {"onegen", "onegen-gold"}


def test_eval_command_rejects_unknown_systems(tiny_model, eval_dir: Path, capsys) -> None:
    assert main(["eval", "--data", str(eval_dir), "--systems", "bm25"], model=tiny_model) == 2
    assert "unknown eval systems bm25" in capsys.readouterr().err


def test_stateless_systems_rank_as_the_live_session_and_are_not_asked_for_needless_retrievals(
    tiny_model, eval_dir: Path
) -> None:
    data = dataclasses.replace(load_eval_set(eval_dir), chat=("Hi",))
    vectors = tiny_model.embed_documents(list(data.docs.values()))
    live = run_system(System("live", tiny_model, vectors, "always"), data, max_new_tokens=2)
    replayed = run_system(System("onegen-replayed", tiny_model, vectors, "always", replay=True), data, max_new_tokens=2)
    bare = run_system(System("onegen-replayed-bare", tiny_model, vectors, "always", replay=False), data, max_new_tokens=2)

    assert [e["ranking"] for e in replayed.examples] == [e["ranking"] for e in live.examples]
    assert [e["answer"] for e in replayed.examples] == [e["answer"] for e in live.examples]
    assert [e["ranking"] for e in bare.examples] == [e["ranking"] for e in live.examples]  # `always` decides alike
    assert bare.needless_retrievals is None
