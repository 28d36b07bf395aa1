"""Ingestion from Python, without the command line: read, chunk, index, prune, the demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onegen_integrations.errors import InputFileError
from onegen_integrations.ingest import (
    FILE_KEY,
    chunk_sources,
    demo_conversation,
    demo_documents,
    index_chunks,
    index_demo,
    index_paths,
    read_sources,
)
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import ChromaDocumentStore


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "institute.md").write_text("Odile Marchetti founded the Varenne Institute in 1921.")
    (folder / "people.jsonl").write_text(
        json.dumps({"id": "odile", "text": "Odile Marchetti was born in Selbrook.", "topic": "people"}) + "\n"
        + json.dumps({"id": "tamsey", "text": "The River Tamsey runs through Selbrook."}) + "\n"
    )
    return folder


def test_index_paths_reports_what_each_run_added_replaced_kept_and_removed(
    tmp_path: Path, notes: Path, tiny_model: OneGenModel
) -> None:
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db")
    first = index_paths(store, [notes], show_progress=False)
    assert (first.files, first.documents, first.added, first.total) == (2, 3, 3, 3)

    again = index_paths(store, [notes], show_progress=False)
    assert (again.added, again.replaced, again.unchanged, again.removed) == (0, 0, 3, 0)

    (notes / "people.jsonl").write_text(json.dumps({"id": "odile", "text": "Odile Marchetti was born in 1890."}) + "\n")
    (notes / "institute.md").unlink()
    edited = index_paths(store, [notes], show_progress=False)
    assert (edited.replaced, edited.removed, edited.total) == (1, 2, 1)
    assert store.stored(["odile"])["odile"][0] == "Odile Marchetti was born in 1890."


def test_records_keep_their_ids_and_fields_and_chunks_record_their_file(notes: Path, tiny_model: OneGenModel) -> None:
    sources = read_sources([notes])
    chunked = chunk_sources(sources, tiny_model, chunk_tokens=64, overlap_tokens=8)
    by_id = dict(zip(chunked.chunks.ids, chunked.chunks.metadatas))
    assert {"odile", "tamsey"} <= set(by_id)
    assert by_id["odile"]["topic"] == "people"
    assert by_id["odile"][FILE_KEY] == by_id["tamsey"][FILE_KEY] != next(
        meta[FILE_KEY] for id_, meta in by_id.items() if id_ not in ("odile", "tamsey")
    )


def test_a_long_text_is_chunked_with_ids_that_stay_the_same_across_runs(tmp_path: Path, tiny_model: OneGenModel) -> None:
    long = tmp_path / "long.txt"
    long.write_text(" ".join(f"Sentence number {i} is about the harbour." for i in range(60)))
    first = chunk_sources(read_sources([long]), tiny_model, chunk_tokens=48, overlap_tokens=8).chunks
    second = chunk_sources(read_sources([long]), tiny_model, chunk_tokens=48, overlap_tokens=8).chunks
    assert len(first.ids) > 2
    assert first.ids == second.ids and len(set(first.ids)) == len(first.ids)
    assert all(tiny_model.count_tokens(text) <= 48 for text in first.texts)


def test_reading_needs_no_model_and_refuses_a_bad_record_by_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"title": "no text"}) + "\n")
    with pytest.raises(InputFileError, match=r"bad\.jsonl:2: needs a non-empty string \"text\""):
        read_sources([bad])


def test_a_run_split_into_its_steps_writes_nothing_before_the_store_step(
    tmp_path: Path, notes: Path, tiny_model: OneGenModel
) -> None:
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db")
    chunked = chunk_sources(read_sources([notes]), tiny_model)
    assert store.count() == 0
    report = index_chunks(store, chunked, show_progress=False)
    assert report.added == store.count() == 3


def test_the_demo_corpus_loads_one_way_for_every_caller(tmp_path: Path, tiny_model: OneGenModel) -> None:
    documents = demo_documents()
    assert len(documents) == 43
    assert len({doc.id for doc in documents}) == 43
    assert all(doc.text.strip() and doc.metadata["title"] for doc in documents)
    assert "varenne-institute" in {doc.id for doc in documents}
    assert len(demo_conversation()) == 3

    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db")
    report = index_demo(store)
    assert report.total == store.count() >= 43
    assert index_demo(store).added == 0
