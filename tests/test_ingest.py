"""Indexing files through the real `onegen index` on a persistent database: what a run may
remove, what it refuses before writing, and which files it leaves out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from onegen_integrations.cli import main
from onegen_integrations.ingest import FILE_KEY, find_files, index_paths
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import ChromaDocumentStore


def index(model: OneGenModel, db: Path, *args: str) -> int:
    return main(["index", *args, "--db", str(db)], model=model)


def snapshot(model: OneGenModel, db: Path) -> dict[str, Any]:
    """Every id with its text, metadata and vector: what a failed run must leave as it was."""
    got = ChromaDocumentStore(model, path=db).collection.get(include=["documents", "metadatas", "embeddings"])
    return {
        id_: (text, meta, [round(float(x), 6) for x in vector])
        for id_, text, meta, vector in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
    }


def indexed_one_record(model: OneGenModel, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A database holding one indexed record, and its snapshot."""
    db = tmp_path / "db"
    index(model, db, str(jsonl(tmp_path / "first.jsonl", {"id": "old", "text": "Corvant has a lighthouse."})))
    return db, snapshot(model, db)


def jsonl(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_records_naming_the_same_source_in_two_files_keep_each_other(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    wiki1 = jsonl(tmp_path / "wiki1.jsonl", *({"id": f"a{i}", "text": f"Fact A{i}.", "source": "wikipedia"} for i in range(3)))
    wiki2 = jsonl(tmp_path / "wiki2.jsonl", *({"id": f"b{i}", "text": f"Fact B{i}.", "source": "wikipedia"} for i in range(3)))
    index(tiny_model, db, str(wiki1))
    capsys.readouterr()

    assert index(tiny_model, db, str(wiki2)) == 0

    assert "3 added, 0 replaced, 0 unchanged, 0 removed; collection 'onegen' holds 6" in capsys.readouterr().out
    assert sorted(snapshot(tiny_model, db)) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_a_record_whose_source_is_another_files_path_removes_nothing_of_that_file(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    notes = tmp_path / "notes.txt"
    notes.write_text("Corvant has a lighthouse.")
    index(tiny_model, db, str(notes))
    before = snapshot(tiny_model, db)
    posing = jsonl(tmp_path / "posing.jsonl", {"id": "p", "text": "Selbrook has a mill.", "source": str(notes)})
    capsys.readouterr()

    assert index(tiny_model, db, str(posing)) == 0

    assert "0 removed" in capsys.readouterr().out
    after = snapshot(tiny_model, db)
    assert {id_: after[id_] for id_ in before} == before and set(after) == {*before, "p"}


@pytest.mark.parametrize("emptied", ["notes.txt", "facts.jsonl"])
def test_an_emptied_file_loses_what_it_held_when_its_directory_is_indexed_again(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str], emptied: str
) -> None:
    db, docs = tmp_path / "db", tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("Corvant has a lighthouse.")
    jsonl(docs / "facts.jsonl", {"id": "f1", "text": "Selbrook has a mill."}, {"id": "f2", "text": "Wend is a river."})
    (docs / "kept.md").write_text("The Tamsey flows east.")
    index(tiny_model, db, str(docs))
    kept = {id_: row for id_, row in snapshot(tiny_model, db).items() if row[1][FILE_KEY] != str(docs / emptied)}
    (docs / emptied).write_text("\n" if emptied.endswith(".jsonl") else "   \n")
    capsys.readouterr()

    assert index(tiny_model, db, str(docs)) == 0

    removed = 2 if emptied == "facts.jsonl" else 1
    assert f"{removed} removed; collection 'onegen' holds {len(kept)}" in capsys.readouterr().out
    assert snapshot(tiny_model, db) == kept


def test_a_bad_metadata_key_in_the_last_record_writes_nothing(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db, before = indexed_one_record(tiny_model, tmp_path)
    records = [{"id": f"r{i}", "text": f"Record number {i}."} for i in range(39)] + [{"text": "Last one.", "": "x"}]
    bad = jsonl(tmp_path / "bad.jsonl", *records)
    capsys.readouterr()

    assert index(tiny_model, db, str(bad), "--batch-size", "8") == 2

    err = capsys.readouterr().err
    assert err.startswith(f"onegen: error: {bad}:40: field '' cannot be metadata") and err.count("\n") == 1
    assert snapshot(tiny_model, db) == before


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "x", "text": "Reserved.", FILE_KEY: "/elsewhere.txt"}, f"field '{FILE_KEY}' cannot be metadata"),
        ({"id": "x", "text": "Not a number.", "weight": float("nan")}, "field 'weight' is nan"),
        ({"id": True, "text": "A boolean id."}, '"id" must be a non-empty string or a whole number'),
    ],
)
def test_records_the_index_cannot_hold_are_refused_by_file_and_line(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str], record: dict[str, Any], message: str
) -> None:
    bad = jsonl(tmp_path / "bad.jsonl", {"id": "fine", "text": "Fine."}, record)

    assert index(tiny_model, tmp_path / "db", str(bad)) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"onegen: error: {bad}:2: {message}") and "Traceback" not in err
    assert not (tmp_path / "db").exists()


def test_one_id_for_two_texts_is_refused_naming_both_lines(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db, before = indexed_one_record(tiny_model, tmp_path)
    bad = jsonl(tmp_path / "bad.jsonl", {"id": "x", "text": "One text."}, {"id": "x", "text": "Another text."})
    capsys.readouterr()

    assert index(tiny_model, db, str(bad)) == 2

    err = capsys.readouterr().err
    assert err == f"onegen: error: {bad}:2: id 'x' is already used by {bad}:1 for another text: give each record its own id\n"
    assert snapshot(tiny_model, db) == before


def test_a_record_id_that_collides_with_a_long_records_chunk_ids_is_refused(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    long_text = " ".join(f"Fact number {i} is about the river." for i in range(40))
    bad = jsonl(tmp_path / "bad.jsonl", {"id": "big#0", "text": "A short record."}, {"id": "big", "text": long_text})

    assert index(tiny_model, tmp_path / "db", str(bad), "--chunk-tokens", "32", "--overlap", "8") == 2

    err = capsys.readouterr().err
    assert err.startswith(f"onegen: error: {bad}:2: chunk 0 of record 'big' gets the id 'big#0', which {bad}:1 ")
    assert "ID#0, ID#1" in err and err.count("\n") == 1
    assert not (tmp_path / "db").exists()


def test_an_id_held_by_another_file_is_refused_until_both_are_indexed_together(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    first = jsonl(tmp_path / "first.jsonl", {"id": "x", "text": "Corvant has a lighthouse."})
    index(tiny_model, db, str(first))
    before = snapshot(tiny_model, db)
    second = jsonl(tmp_path / "second.jsonl", {"id": "x", "text": "Selbrook has a mill."})
    capsys.readouterr()

    assert index(tiny_model, db, str(second)) == 2
    assert f"id 'x' is already in the collection from {first}" in capsys.readouterr().err
    assert snapshot(tiny_model, db) == before

    first.write_text("")  # the record moved from first to second: one run sees both
    assert index(tiny_model, db, str(first), str(second)) == 0
    assert {id_: row[0] for id_, row in snapshot(tiny_model, db).items()} == {"x": "Selbrook has a mill."}


def test_a_numeric_source_field_beside_a_text_file_indexes_and_reports(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("Corvant has a lighthouse.")
    jsonl(tmp_path / "docs" / "odd.jsonl", {"id": "five", "text": "Selbrook has a mill.", "source": 5})

    assert index(tiny_model, db, str(tmp_path / "docs")) == 0
    assert index(tiny_model, db, str(tmp_path / "docs")) == 0

    assert "2 documents from 2 files: 0 added, 0 replaced, 2 unchanged, 0 removed" in capsys.readouterr().out
    assert snapshot(tiny_model, db)["five"][1]["source"] == 5


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """docs/ with a file, a link inside it, a link out of it, a broken link and a linked folder."""
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    docs.mkdir()
    outside.mkdir()
    (docs / "notes.txt").write_text("Corvant has a lighthouse.")
    (outside / "secret.txt").write_text("The vault code is 1234.")
    (docs / "alias.txt").symlink_to(docs / "notes.txt")
    (docs / "leak.txt").symlink_to(Path("..") / "outside" / "secret.txt")
    (docs / "dead.md").symlink_to(docs / "missing.md")
    (docs / "more").symlink_to(outside, target_is_directory=True)
    return docs


def test_links_out_of_an_indexed_directory_are_skipped_and_named(
    linked: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"

    assert index(tiny_model, db, str(linked)) == 0

    out, err = capsys.readouterr()
    assert "2 documents from 2 files, 3 skipped:" in out
    assert f"onegen: skipped {linked / 'leak.txt'}: links outside {linked}" in err
    assert f"onegen: skipped {linked / 'dead.md'}: a broken link" in err
    assert f"onegen: skipped {linked / 'more'}: a linked folder" in err
    texts = {row[0] for row in snapshot(tiny_model, db).values()}
    assert texts == {"Corvant has a lighthouse."} and not any("vault" in text for text in texts)


def test_follow_symlinks_indexes_what_the_links_lead_to(linked: Path, tiny_model: OneGenModel) -> None:
    files, skipped = find_files([linked], follow_symlinks=True)

    assert sorted(p.relative_to(linked).as_posix() for p in files) == [
        "alias.txt", "leak.txt", "more/secret.txt", "notes.txt"
    ]
    assert [s.path.name for s in skipped] == ["dead.md"]


def test_a_broken_link_given_by_name_is_one_clear_error(
    linked: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert index(tiny_model, tmp_path / "db", str(linked / "dead.md")) == 2

    assert capsys.readouterr().err.startswith(f"onegen: error: {linked / 'dead.md'}: a broken symbolic link")


def test_the_same_text_in_two_files_is_pruned_only_with_its_own_file(tmp_path: Path, tiny_model: OneGenModel) -> None:
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db")
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("Corvant has a lighthouse.")
    index_paths(store, [tmp_path / "a.txt", tmp_path / "b.txt"], show_progress=False)
    (tmp_path / "a.txt").write_text("Selbrook has a mill.")

    report = index_paths(store, [tmp_path / "a.txt"], show_progress=False)

    assert (report.added, report.removed, report.total) == (1, 1, 2)
    held = store.collection.get(include=["documents", "metadatas"])
    assert sorted(zip(held["documents"], (os.path.basename(m[FILE_KEY]) for m in held["metadatas"]))) == [
        ("Corvant has a lighthouse.", "b.txt"),
        ("Selbrook has a mill.", "a.txt"),
    ]


def test_a_binary_chat_script_is_one_clear_error(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "script.txt"
    script.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")

    assert main(["chat", "--script", str(script), "--retrieval", "never"], model=tiny_model) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"onegen: error: {script}: not UTF-8 text") and err.count("\n") == 1


def test_a_bad_record_is_reported_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = jsonl(tmp_path / "bad.jsonl", {"title": "no text"})

    assert main(["index", str(bad), "--db", str(tmp_path / "db"), "--model", str(tmp_path / "no-model")]) == 2

    assert capsys.readouterr().err.startswith(f'onegen: error: {bad}:1: needs a non-empty string "text"')
