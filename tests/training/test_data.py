"""The validator, the converters and the split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from onegen_training.cli import main
from onegen_training.converters.dialogue import Reference, dialogues
from onegen_training.converters.hotpot import convert_hotpot
from onegen_training.converters.squad import Article, read_squad, single_hop
from onegen_training.data import DataFormatError, load_documents, load_records
from onegen_training.split import split_records

# The public datasets these tests read are not part of the repository: point SQUAD_DIR and
# HOTPOT_DIR at the directories holding them (training/README.md, "Data", names the files).
SQUAD = Path(os.environ.get("SQUAD_DIR", "/nonexistent")) / "train-v1.1.first11articles.json.gz"
HOTPOT = Path(os.environ.get("HOTPOT_DIR", "/nonexistent")) / "hotpot_dev_distractor_first103.json"
needs_data = pytest.mark.skipif(not SQUAD.exists(), reason=f"set SQUAD_DIR to the directory holding {SQUAD.name}")
needs_hotpot = pytest.mark.skipif(not HOTPOT.exists(), reason=f"set HOTPOT_DIR to the directory holding {HOTPOT.name}")


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_validator_names_line_and_reason(tmp_path: Path) -> None:
    docs = load_documents(write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}]))
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "[RQ] a", "retrievals": [{"positives": ["d1"]}]}]}
    two_markers = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "[RQ][RQ] a", "retrievals": [{"positives": ["d1"]}]}]}
    unknown = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "[RQ] a", "retrievals": [{"positives": ["d9"]}]}]}
    path = write(tmp_path / "train.jsonl", [good, two_markers, "{broken", unknown])
    with pytest.raises(DataFormatError) as error:
        load_records(path, docs)
    message = str(error.value)
    assert "train.jsonl:2: message 1: 2 [RQ] marker(s) but 1 retrievals" in message
    assert "train.jsonl:3: not valid JSON" in message


def test_validator_reports_every_bad_record(tmp_path: Path) -> None:
    docs = load_documents(write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}]))
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "[RQ] a", "retrievals": [{"positives": ["d9"]}]}]},
        {"messages": [{"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q [RD]"}, {"role": "assistant", "content": "a"}]},
    ]
    with pytest.raises(DataFormatError) as error:
        load_records(write(tmp_path / "train.jsonl", rows), docs)
    message = str(error.value)
    assert "train.jsonl:1: message 1, retrieval 0: unknown document id 'd9'" in message
    assert "train.jsonl:2: message 0: role must be 'user'" in message
    assert "train.jsonl:3: message 0: contains the reserved token '[RD]'" in message


def test_duplicate_document_ids_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"docs.jsonl:2: duplicate document id 'd1'"):
        load_documents(write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}, {"id": "d1", "text": "y"}]))


def answer(retrieval: dict) -> dict:
    """A valid one-retrieval record with `retrieval` in place of its retrieval."""
    return {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "[RQ] a", "retrievals": [retrieval]}]}


def test_a_document_id_that_is_not_a_string_is_named_by_line(tmp_path: Path) -> None:
    rows = [{"id": 5, "text": "x"}, ["d1", "x"], {"id": "d2", "text": 7}]
    with pytest.raises(DataFormatError) as error:
        load_documents(write(tmp_path / "docs.jsonl", rows))
    message = str(error.value)
    assert "docs.jsonl:1: 'id' must be a non-empty string, not a number (5)" in message
    assert "docs.jsonl:2: a document must be a JSON object, not a list" in message
    assert "docs.jsonl:3: document 'd2' has no 'text'" in message


@pytest.mark.parametrize(("record", "reason"), [
    ({**answer({"positives": ["d1"]}), "id": 5}, "'id' must be a string, not a number (5)"),
    ({**answer({"positives": ["d1"]}), "group": ["a"]}, "'group' must be a string, not a list"),
    ('"just text"', "a record must be a JSON object, not a string"),
    ({"messages": ["hello", {"role": "assistant", "content": "a"}]}, "message 0: a message must be a JSON object, not a string"),
    ({"messages": [{"role": "user", "content": "q"}, 7]}, "message 1: a message must be a JSON object, not a number (7)"),
    (answer({"positives": [["d1"]]}), "message 1, retrieval 0: 'positives' item 0 must be a document id (a string), not a list"),
    (answer({"positives": ["d1"], "negatives": [{"id": "d2"}]}), "message 1, retrieval 0: 'negatives' item 0 must be a document id (a string), not an object"),
    (answer({"positives": [5]}), "message 1, retrieval 0: 'positives' item 0 must be a document id (a string), not a number (5)"),
    ({"messages": [{"role": "user", "content": "q", "retrievals": None}, {"role": "assistant", "content": "a"}]},
     "message 0: user messages cannot hold [RQ] or retrievals"),
])
def test_a_field_of_the_wrong_type_is_named_by_line_not_a_traceback(tmp_path: Path, record: object, reason: str) -> None:
    docs = load_documents(write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}, {"id": "d2", "text": "y"}]))
    path = write(tmp_path / "train.jsonl", [answer({"positives": ["d1"]}), record])
    with pytest.raises(DataFormatError) as error:
        load_records(path, docs)
    assert f"train.jsonl:2: {reason}" in str(error.value)


@pytest.mark.parametrize("name", ["docs.jsonl", "train.jsonl"])
def test_invalid_utf8_names_the_line_and_byte_and_says_to_resave_as_utf8(tmp_path: Path, name: str) -> None:
    docs = write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}])
    first = (json.dumps({"id": "d1", "text": "x"} if name == "docs.jsonl" else answer({"positives": ["d1"]})) + "\n").encode()
    path = tmp_path / name
    path.write_bytes(first + b'{"id": "caf\xe9", "text": "latin-1"}\n{broken\n')
    with pytest.raises(DataFormatError) as error:
        load_records(path, load_documents(docs)) if name == "train.jsonl" else load_documents(path)
    message = str(error.value)
    offset = len(first) + len(b'{"id": "caf')
    assert f"{name}:2: not valid UTF-8 (byte b'\\xe9' at byte offset {offset} of the file): re-save the file as UTF-8" in message
    assert f"{name}:3: not valid JSON" in message  # the lines after it are still read


def test_a_utf8_byte_order_mark_is_not_data(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "d1", "text": "x"}).encode() + b"\n")
    assert load_documents(path) == {"d1": "x"}


@pytest.mark.parametrize("content", ["", "\n  \n\t\n"])
def test_an_empty_file_holds_no_records(tmp_path: Path, content: str) -> None:
    (tmp_path / "empty.jsonl").write_text(content)
    with pytest.raises(DataFormatError, match=r"empty.jsonl holds no records: the file is empty or only blank lines"):
        load_documents(tmp_path / "empty.jsonl")
    docs = load_documents(write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}]))
    with pytest.raises(DataFormatError, match=r"empty.jsonl holds no records"):
        load_records(tmp_path / "empty.jsonl", docs)


def test_validate_prints_the_problems_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}])
    records = write(tmp_path / "train.jsonl", [answer({"positives": [["d1"]]})])
    assert main(["validate", str(docs), str(records)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 1 problem(s) in the training data:")
    assert "train.jsonl:1: message 1, retrieval 0: 'positives' item 0 must be a document id" in err


def test_validate_of_an_empty_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}])
    (tmp_path / "train.jsonl").write_text("\n")
    assert main(["validate", str(docs), str(tmp_path / "train.jsonl")]) == 1
    assert "train.jsonl holds no records" in capsys.readouterr().err


def test_validate_of_a_missing_file_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = write(tmp_path / "train.jsonl", [answer({"positives": ["d1"]})])
    assert main(["validate", str(tmp_path / "nowhere.jsonl"), str(records)]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere.jsonl'}: no such file or directory: check the path\n"


def test_validate_of_good_files_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = write(tmp_path / "docs.jsonl", [{"id": "d1", "text": "x"}])
    records = write(tmp_path / "train.jsonl", [answer({"positives": ["d1"]})])
    assert main(["validate", str(docs), str(records)]) == 0
    assert capsys.readouterr().out.endswith("train.jsonl: 1 valid records\n")


@needs_data
def test_squad_records_retrieve_their_paragraph_with_same_article_negatives() -> None:
    articles = read_squad(SQUAD)
    records = single_hop(articles, negatives=3)
    assert len(records) == 3807
    first = records[0]
    retrieval = first.messages[1].retrievals[0]
    assert first.messages[1].content.startswith("[RQ] ")
    assert len(retrieval.negatives) == 3
    assert all(d.split("#")[0] == first.group for d in retrieval.positives + retrieval.negatives)
    assert retrieval.positives[0] not in retrieval.negatives


@needs_data
def test_split_never_puts_an_article_on_both_sides() -> None:
    train, held_out = split_records(single_hop(read_squad(SQUAD)), eval_fraction=0.2, seed=0)
    assert {r.group for r in train}.isdisjoint({r.group for r in held_out})
    assert len(held_out) >= 0.2 * (len(train) + len(held_out))


@needs_data
def test_dialogue_follow_ups_refer_to_the_subject_and_keep_the_original() -> None:
    articles = read_squad(SQUAD)
    records = dialogues(articles, turns=3)
    beyonce = next(r for r in records if r.group == "Beyoncé")
    users = beyonce.messages[::2]
    assert len(users) == 3 and len(beyonce.messages[1::2]) == 3
    for follow_up in users[1:]:
        assert "Beyonc" not in follow_up.content and "Beyonc" in follow_up.original
    reference = Reference.for_article(next(a for a in articles if a.title == "Beyoncé"))
    assert reference.rewrite("When did Beyoncé release Lemonade?") == "When did she release Lemonade?"
    assert reference.rewrite("What was Beyonce's first album?") == "What was her first album?"
    assert reference.rewrite("Who managed Beyoncé?") == "Who managed her?"


def test_group_subjects_become_they_and_place_qualifiers_are_not_kinds() -> None:
    normans = Article("Normans", {"Normans#0": "The Normans were a people. The Norman conquest and the Normans."})
    huguenot = Article("Huguenot", {"Huguenot#0": "Huguenots fled. A Huguenot church. The Huguenots settled. Many Huguenots."})
    sky = Article("Sky_(United_Kingdom)", {"Sky#0": "Sky is a broadcaster. It launched Sky+ in 2001."})
    they = Reference.for_article(normans)
    assert they.rewrite("Where were the Normans located?") == "Where were they located?"
    assert they.rewrite("The Normans fought whom?") == "They fought whom?"
    assert they.rewrite("Who was the Normans' main enemy?") == "Who was their main enemy?"
    group = Reference.for_article(huguenot)
    assert group.names == ("Huguenots",)
    assert group.rewrite("How many Huguenot colonists came?") is None
    assert group.rewrite("Why did Berlin Huguenots switch to German?") is None
    assert group.rewrite("When Huguenots arrived, who helped them?") == "When they arrived, who helped them?"
    place = Reference.for_article(sky)
    assert place.subject == "it" and place.names == ("Sky",)
    assert place.rewrite("When did Sky launch?") == "When did it launch?"
    assert place.rewrite("When did BSkyB discontinue the Sky+ Box?") is None


@needs_data
def test_dialogue_rounds_rechain_the_same_questions_in_new_orders() -> None:
    articles = read_squad(SQUAD)
    once, twice = dialogues(articles, turns=3), dialogues(articles, turns=3, rounds=2)
    first_round = [r for r in twice if "-r" not in r.id]
    assert [r.id for r in first_round] == [r.id for r in once]
    assert [m.content for r in first_round for m in r.messages] == [m.content for r in once for m in r.messages]
    assert len(twice) == 2 * len(once) and len({r.id for r in twice}) == len(twice)
    openers = {r.messages[0].original for r in once}
    assert any(r.messages[0].original not in openers for r in twice if "-r1" in r.id)


@needs_hotpot
def test_hotpot_records_have_two_hops_with_distractor_negatives() -> None:
    docs, records = convert_hotpot(HOTPOT)
    assert len(records) == 103
    answer = records[0].messages[1]
    assert answer.content.count("[RQ]") == len(answer.retrievals) == 2
    assert [r.positives for r in answer.retrievals] == [["Scott Derrickson"], ["Ed Wood"]]
    assert len(answer.retrievals[0].negatives) == 8
    assert {d["id"] for d in docs} >= {"Scott Derrickson", "Ed Wood"}
