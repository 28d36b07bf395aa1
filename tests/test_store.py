"""ChromaDocumentStore: persistence, model fingerprints, idempotent resumable adds, search."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from onegen_integrations.errors import (
    DocumentTooLongError,
    EmbeddingModelMismatchError,
    EmptyStoreError,
    EmptyTextError,
    InvalidDocumentError,
    InvalidQueryError,
    NotAChromaDatabaseError,
    StoreError,
    StoreWriteError,
)
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import RetrievalQuery
from onegen_integrations.store import ChromaDocumentStore, content_id
from tests.conftest import make_tiny_model
from tests.servers import ChromaServer, free_port

TEXTS = [
    "Ada Lovelace wrote the first computer program.",
    "The Eiffel Tower is in Paris.",
    "Photosynthesis turns light into chemical energy.",
    "Mount Everest is the highest mountain on Earth.",
    "The Nile flows north into the Mediterranean.",
]


@pytest.fixture
def store(tmp_path: Path, tiny_model: OneGenModel) -> ChromaDocumentStore:
    return ChromaDocumentStore(tiny_model, path=tmp_path / "db", collection="docs")


def chroma_client(path: Path) -> chromadb.ClientAPI:
    """A Chroma client of our own, as a caller would pass one (telemetry off: no network)."""
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def count_embedded(model: OneGenModel) -> list[list[str]]:
    """Record the texts of every `embed_documents` call on this model instance."""
    calls: list[list[str]] = []
    embed = model.embed_documents

    def recording(texts, **options):
        calls.append(list(texts))
        return embed(texts, **options)

    model.embed_documents = recording
    return calls


def test_vectors_written_by_another_process_are_found_here(tmp_path: Path, tiny_model: OneGenModel) -> None:
    writer = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from tests.conftest import make_tiny_model
        from onegen_integrations.store import ChromaDocumentStore
        store = ChromaDocumentStore(make_tiny_model(), path={str(tmp_path / "db")!r}, collection="docs")
        store.add({TEXTS!r}, show_progress=False)
        """
    )
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=120)

    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db", collection="docs")
    assert store.count() == len(TEXTS)
    vectors = tiny_model.embed_documents(TEXTS)
    for text, vector in zip(TEXTS, vectors):
        top = store.search(vector, k=1)[0]
        assert (top.id, top.text) == (content_id(text), text)
        assert top.score == pytest.approx(1.0, abs=1e-5)


def test_collection_filled_by_another_model_refuses_to_open(tmp_path: Path, tiny_model: OneGenModel) -> None:
    ChromaDocumentStore(tiny_model, path=tmp_path / "db", collection="docs").add(TEXTS[:2], show_progress=False)
    other = make_tiny_model(seed=1)

    with pytest.raises(EmbeddingModelMismatchError) as error:
        ChromaDocumentStore(other, path=tmp_path / "db", collection="docs")

    message = str(error.value)
    assert tiny_model.fingerprint in message and other.fingerprint in message
    assert "new collection" in message
    assert ChromaDocumentStore(tiny_model, path=tmp_path / "db", collection="docs").count() == 2


def test_adding_the_same_texts_again_stores_each_once(store: ChromaDocumentStore) -> None:
    first = store.add(TEXTS + TEXTS[:1], show_progress=False)
    second = store.add(TEXTS, show_progress=False)

    assert first == [content_id(t) for t in TEXTS + TEXTS[:1]]
    assert second == first[: len(TEXTS)]
    assert store.count() == len(TEXTS)


def test_resumed_add_embeds_only_missing_documents(store: ChromaDocumentStore) -> None:
    store.add(TEXTS[:3], show_progress=False)
    calls = count_embedded(store.model)

    store.add(TEXTS, show_progress=False)

    assert sorted(t for call in calls for t in call) == sorted(TEXTS[3:])
    assert store.count() == len(TEXTS)


def test_documents_are_embedded_and_written_in_batches(store: ChromaDocumentStore) -> None:
    calls = count_embedded(store.model)

    store.add(TEXTS, batch_size=2, show_progress=False)

    assert [len(call) for call in calls] == [2, 2, 1]
    assert store.count() == 5


def test_given_ids_and_metadata_are_kept(store: ChromaDocumentStore) -> None:
    store.add(TEXTS[:2], ids=["ada", "eiffel"], metadatas=[{"topic": "computing"}, None], show_progress=False)

    hit = store.search(store.model.embed_documents([TEXTS[0]])[0], k=1)[0]
    assert (hit.id, hit.metadata) == ("ada", {"topic": "computing"})


@pytest.mark.parametrize(
    ("bad_text", "error"),
    [("   ", EmptyTextError), ("word " * 600, DocumentTooLongError)],
    ids=["empty", "too-long"],
)
def test_a_bad_document_leaves_the_collection_unchanged(
    store: ChromaDocumentStore, bad_text: str, error: type[Exception]
) -> None:
    store.add(TEXTS[:1], show_progress=False)
    calls = count_embedded(store.model)

    with pytest.raises(error, match="text 3"):
        store.add([*TEXTS[1:4], bad_text], batch_size=1, show_progress=False)

    assert calls == []
    assert store.count() == 1


def test_mismatched_lengths_are_refused(store: ChromaDocumentStore) -> None:
    with pytest.raises(ValueError, match="2 texts, 1 ids"):
        store.add(TEXTS[:2], ids=["one"], show_progress=False)
    assert store.count() == 0


def test_one_id_for_two_texts_is_refused(store: ChromaDocumentStore) -> None:
    store.add(TEXTS[:1], ids=["kept"], show_progress=False)

    with pytest.raises(InvalidDocumentError, match=r"id 'same' is given to two different texts \(documents 1 and 3\)"):
        store.add(TEXTS[1:5], ids=["other", "same", "third", "same"], show_progress=False)

    assert store.stored(["kept", "other", "same", "third"]) == {"kept": (TEXTS[0], None)}


def test_a_directory_of_other_files_is_not_opened(tmp_path: Path, tiny_model: OneGenModel) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(NotAChromaDatabaseError, match=r"no chroma\.sqlite3"):
        ChromaDocumentStore(tiny_model, path=tmp_path)

    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_file_path_is_not_opened(tmp_path: Path, tiny_model: OneGenModel) -> None:
    (tmp_path / "db").write_text("mine")

    with pytest.raises(NotAChromaDatabaseError, match="is a file"):
        ChromaDocumentStore(tiny_model, path=tmp_path / "db")

    assert (tmp_path / "db").read_text() == "mine"


def test_a_corrupt_database_names_the_reason(tmp_path: Path, tiny_model: OneGenModel) -> None:
    (tmp_path / "chroma.sqlite3").write_text("not sqlite")

    with pytest.raises(NotAChromaDatabaseError, match="not a database"):
        ChromaDocumentStore(tiny_model, path=tmp_path)

    assert (tmp_path / "chroma.sqlite3").read_text() == "not sqlite"
    assert [p.name for p in tmp_path.iterdir()] == ["chroma.sqlite3"]


def test_searching_an_empty_collection_says_to_index_first(store: ChromaDocumentStore) -> None:
    with pytest.raises(EmptyStoreError, match="onegen index"):
        store.search(np.ones(store.model.dimension), k=1)


def test_a_document_is_its_own_nearest_neighbour(store: ChromaDocumentStore) -> None:
    store.add(TEXTS, show_progress=False)
    vector = store.model.embed_documents([TEXTS[2]])[0]

    hits = store.search(vector, k=3)

    assert hits[0].text == TEXTS[2]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    others = store.model.embed_documents([h.text for h in hits[1:]])
    assert [h.score for h in hits[1:]] == pytest.approx(list(others @ vector), abs=1e-5)
    assert hits[1].score >= hits[2].score


def test_k_beyond_the_collection_returns_every_document(store: ChromaDocumentStore) -> None:
    store.add(TEXTS[:2], show_progress=False)

    query = RetrievalQuery(vector=store.model.embed_documents([TEXTS[0]])[0], text="ada?", k=10)

    assert sorted(h.text for h in store.retrieve(query)) == sorted(TEXTS[:2])


def test_where_filters_by_metadata(store: ChromaDocumentStore) -> None:
    store.add(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))], show_progress=False)
    vector = store.model.embed_documents([TEXTS[0]])[0]

    hits = store.search(vector, k=5, where={"n": {"$gte": 3}})

    assert sorted(h.text for h in hits) == sorted(TEXTS[3:])


def test_deleted_documents_are_gone(store: ChromaDocumentStore) -> None:
    ids = store.add(TEXTS, show_progress=False)

    store.delete(ids[:2])

    assert store.count() == 3
    hits = store.search(store.model.embed_documents([TEXTS[0]])[0], k=5)
    assert TEXTS[0] not in [h.text for h in hits]


def test_an_id_given_a_new_text_is_embedded_again_and_replaced(store: ChromaDocumentStore) -> None:
    store.add(TEXTS[:2], ids=["a", "b"], show_progress=False)
    calls = count_embedded(store.model)

    store.add([TEXTS[2], TEXTS[1]], ids=["a", "b"], show_progress=False)

    assert calls == [[TEXTS[2]]]  # "b" is unchanged: not embedded again
    assert store.count() == 2
    hit = store.search(store.model.embed_documents([TEXTS[2]])[0], k=1)[0]
    assert (hit.id, hit.text, hit.score) == ("a", TEXTS[2], pytest.approx(1.0, abs=1e-5))


def test_new_metadata_for_an_unchanged_text_replaces_the_old_without_embedding(store: ChromaDocumentStore) -> None:
    store.add(
        TEXTS[:2],
        ids=["a", "b"],
        metadatas=[{"topic": "computing", "year": 1843}, {"city": "Paris"}],
        show_progress=False,
    )
    calls = count_embedded(store.model)

    store.add(TEXTS[:2], ids=["a", "b"], metadatas=[{"topic": "history"}, None], show_progress=False)

    assert calls == []
    assert store.stored(["a", "b", "c"]) == {"a": (TEXTS[0], {"topic": "history"}), "b": (TEXTS[1], None)}


def test_prune_deletes_only_matching_documents_not_kept(store: ChromaDocumentStore) -> None:
    store.add(TEXTS, ids=list("abcde"), metadatas=[{"source": "x"}] * 3 + [{"source": "y"}] * 2, show_progress=False)

    assert sorted(store.prune({"source": "x"}, {"b"})) == ["a", "c"]

    assert sorted(store.stored(list("abcde"))) == ["b", "d", "e"]
    assert store.metadata_values("source") == {"x", "y"}


def test_an_empty_collection_made_elsewhere_is_claimed_for_the_model(tmp_path: Path, tiny_model: OneGenModel) -> None:
    client = chroma_client(tmp_path / "db")
    client.create_collection("docs", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)

    ChromaDocumentStore(tiny_model, client=client, collection="docs").add(TEXTS[:1], show_progress=False)

    with pytest.raises(EmbeddingModelMismatchError):
        ChromaDocumentStore(make_tiny_model(seed=1), client=client, collection="docs")


def test_a_filled_collection_without_a_fingerprint_is_refused(tmp_path: Path, tiny_model: OneGenModel) -> None:
    client = chroma_client(tmp_path / "db")
    foreign = client.create_collection("docs", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    foreign.add(ids=["x"], embeddings=[np.ones(tiny_model.dimension)], documents=["x"])

    with pytest.raises(EmbeddingModelMismatchError, match="unknown model"):
        ChromaDocumentStore(tiny_model, client=client, collection="docs")


def test_a_collection_with_another_distance_is_refused(tmp_path: Path, tiny_model: OneGenModel) -> None:
    client = chroma_client(tmp_path / "db")
    client.create_collection("docs", configuration={"hnsw": {"space": "l2"}}, embedding_function=None)

    with pytest.raises(StoreError, match="measures l2 distance"):
        ChromaDocumentStore(tiny_model, client=client, collection="docs")


@pytest.fixture
def server(tmp_path: Path):
    """A running `ChromaServer`, killed at the end of the test."""
    server = ChromaServer(tmp_path / "server")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def chroma_server(server: ChromaServer) -> int:
    """The port of a running Chroma server."""
    return server.port


def test_a_chroma_server_serves_the_same_store(chroma_server: int, tiny_model: OneGenModel) -> None:
    store = ChromaDocumentStore(tiny_model, host="127.0.0.1", port=chroma_server, collection="remote")
    store.add(TEXTS, show_progress=False)
    again = ChromaDocumentStore(tiny_model, host="127.0.0.1", port=chroma_server, collection="remote")
    assert again.count() == len(TEXTS)
    vector = tiny_model.embed_documents([TEXTS[1]])[0]
    assert again.search(vector, k=1)[0].text == TEXTS[1]
    with pytest.raises(EmbeddingModelMismatchError):
        ChromaDocumentStore(make_tiny_model(seed=1), host="127.0.0.1", port=chroma_server, collection="remote")


def test_an_unreachable_server_is_a_clear_error_and_leaves_embedded_stores_working(
    tiny_model: OneGenModel, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match="chroma run"):
        ChromaDocumentStore(tiny_model, host="127.0.0.1", port=free_port())
    # chromadb writes server settings into the Settings it is given; they must not leak.
    assert ChromaDocumentStore(tiny_model, path=tmp_path / "db").count() == 0


# Bad input: every record is checked before anything is embedded or written.

FACTS = [f"Fact {i}: the archive's shelf {i} holds {i * 7} maps of the northern coast." for i in range(40)]


def snapshot(store: ChromaDocumentStore) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Every document the collection holds: id -> (text, metadata)."""
    got = store.collection.get(include=["documents", "metadatas"])
    return {id_: (text, meta) for id_, text, meta in zip(got["ids"], got["documents"], got["metadatas"])}


@pytest.mark.parametrize(
    ("bad_metadata", "reason"),
    [
        ({"": "x"}, "key is empty"),
        ({"#document": "x"}, "starting with '#' are reserved"),
        ({"$and": "x"}, r"starting with '\$' are reserved"),
        ({"chroma:kind": "x"}, "starting with 'chroma:' are reserved"),
        ({"score": math.nan}, "NaN or infinite"),
        ({"score": -math.inf}, "NaN or infinite"),
        ({"scores": [0.5, math.nan]}, "list holds a value that is NaN or infinite"),
        ({"big": 2**63}, "beyond 64-bit integers"),
        ({"nested": {"a": 1}}, "Chroma refuses"),
        ({"tags": []}, "empty lists"),
        ({"tags": [1, "one"]}, "one type"),
        ({7: "x"}, "not a string"),
        ({"note": "bad \ud800"}, "UTF-8"),
        ("notes.md", "metadata of type str"),
    ],
    ids=[
        "empty-key",
        "hash-key",
        "dollar-key",
        "chroma-key",
        "nan",
        "inf",
        "nan-in-list",
        "int-beyond-int64",
        "nested",
        "empty-list",
        "mixed-list",
        "int-key",
        "surrogate",
        "not-a-mapping",
    ],
)
def test_metadata_chroma_would_refuse_or_change_stops_the_add_before_any_write(
    store: ChromaDocumentStore, bad_metadata: Any, reason: str
) -> None:
    store.add(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))], show_progress=False)
    before = snapshot(store)
    calls = count_embedded(store.model)
    metadatas: list[Any] = [{"shelf": i} for i in range(39)] + [bad_metadata]

    with pytest.raises(InvalidDocumentError, match=f"document 39 .*{reason}.*nothing was written") as error:
        store.add(FACTS, metadatas=metadatas, batch_size=8, show_progress=False)

    assert content_id(FACTS[39]) in str(error.value)
    assert calls == []
    assert snapshot(store) == before
    # The collection still takes writes (a NaN inside a list would have broken it for good).
    store.add(FACTS[:3], show_progress=False)
    assert store.count() == len(TEXTS) + 3


def test_a_metadata_value_of_none_means_the_key_is_not_stored(store: ChromaDocumentStore) -> None:
    store.add(TEXTS[:2], ids=["a", "b"], metadatas=[{"page": None, "source": "x"}, {"page": None}], show_progress=False)
    calls = count_embedded(store.model)

    store.add(TEXTS[:2], ids=["a", "b"], metadatas=[{"page": None, "source": "x"}, {"page": None}], show_progress=False)

    assert calls == []
    assert store.stored(["a", "b"]) == {"a": (TEXTS[0], {"source": "x"}), "b": (TEXTS[1], None)}


@pytest.mark.parametrize("given_ids", [None, ["one", "two", "three"]], ids=["content-ids", "given-ids"])
@pytest.mark.parametrize("bad_text", [None, 42, b"bytes"], ids=["none", "int", "bytes"])
def test_a_text_that_is_not_a_string_is_refused_before_anything(
    store: ChromaDocumentStore, given_ids: list[str] | None, bad_text: Any
) -> None:
    store.add(TEXTS[:1], show_progress=False)
    before = snapshot(store)

    with pytest.raises(InvalidDocumentError, match=f"document 1 is {type(bad_text).__name__}, not a string"):
        store.add([TEXTS[1], bad_text, TEXTS[2]], ids=given_ids, show_progress=False)

    assert snapshot(store) == before


def test_a_text_that_is_not_valid_unicode_is_refused(store: ChromaDocumentStore) -> None:
    with pytest.raises(InvalidDocumentError, match="document 1 is not valid UTF-8"):
        store.add([TEXTS[0], "broken \ud800 text"], show_progress=False)
    assert store.count() == 0


@pytest.mark.parametrize("bad_id", ["", None, 7, "bad \ud800"], ids=["empty", "none", "int", "surrogate"])
def test_a_bad_id_is_refused_before_anything(store: ChromaDocumentStore, bad_id: Any) -> None:
    store.add(TEXTS[:1], ids=["kept"], show_progress=False)

    with pytest.raises(InvalidDocumentError, match="document 1 has id"):
        store.add(TEXTS[1:3], ids=["fine", bad_id], show_progress=False)

    assert snapshot(store) == {"kept": (TEXTS[0], None)}


@pytest.mark.parametrize(
    "bad_vector",
    [[math.nan] + [0.1] * 63, [math.inf] + [0.1] * 63, [1e39] + [0.1] * 63, [0.0] * 64],
    ids=["nan", "inf", "overflows-float32", "zeros"],
)
def test_a_query_vector_without_a_direction_is_refused(store: ChromaDocumentStore, bad_vector: list[float]) -> None:
    store.add(TEXTS, show_progress=False)
    before = snapshot(store)
    assert store.model.dimension == len(bad_vector)

    with pytest.raises(InvalidQueryError, match="query vector"):
        store.search(bad_vector, k=2)
    with pytest.raises(InvalidQueryError, match="query vector"):
        store.retrieve(RetrievalQuery(vector=np.asarray(bad_vector), text="?", k=2))

    assert snapshot(store) == before


@pytest.mark.parametrize("bad_k", [0, -3, 2.5], ids=["zero", "negative", "fraction"])
def test_a_k_that_is_not_a_whole_number_of_at_least_one_is_refused(store: ChromaDocumentStore, bad_k: Any) -> None:
    store.add(TEXTS, show_progress=False)
    vector = store.model.embed_documents([TEXTS[0]])[0]

    with pytest.raises(InvalidQueryError, match="k must be"):
        store.search(vector, k=bad_k)
    with pytest.raises(InvalidQueryError, match="k must be"):
        store.retrieve(RetrievalQuery(vector=vector, text="?", k=bad_k))

    assert store.count() == len(TEXTS)


def test_metadata_values_lists_every_string_value_of_a_key(store: ChromaDocumentStore) -> None:
    metadatas = [{"source": "a.md", "page": 1}, {"source": "b.md"}, {"source": "a.md"}, {"page": 2}, None]
    store.add(TEXTS, metadatas=metadatas, show_progress=False)

    assert store.metadata_values("source") == {"a.md", "b.md"}
    assert store.metadata_values("page") == set()  # numbers are not string values
    assert store.metadata_values("missing") == set()


# The database and the collection: refused without being changed.


def test_an_l2_collection_is_refused_without_being_claimed(tmp_path: Path, tiny_model: OneGenModel) -> None:
    client = chroma_client(tmp_path / "db")
    client.create_collection(
        "docs", configuration={"hnsw": {"space": "l2"}}, metadata={"owner": "me"}, embedding_function=None
    )

    with pytest.raises(StoreError, match="measures l2 distance"):
        ChromaDocumentStore(tiny_model, client=client, collection="docs")

    after = client.get_collection("docs")
    assert after.metadata == {"owner": "me"}
    assert after.configuration["hnsw"]["space"] == "l2"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "schema",
    [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');",
        # An app's own `migrations` table (Laravel names its table so) is not Chroma's.
        "CREATE TABLE migrations (id INTEGER PRIMARY KEY, migration TEXT, batch INTEGER);",
    ],
    ids=["users-table", "other-migrations-table"],
)
def test_another_programs_sqlite_database_is_left_byte_for_byte(
    tmp_path: Path, tiny_model: OneGenModel, schema: str
) -> None:
    database = tmp_path / "chroma.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.executescript(schema)
    connection.close()
    digest = file_digest(database)

    with pytest.raises(NotAChromaDatabaseError, match="another program's SQLite database"):
        ChromaDocumentStore(tiny_model, path=tmp_path)

    assert file_digest(database) == digest
    assert [p.name for p in tmp_path.iterdir()] == ["chroma.sqlite3"]


def test_an_empty_sqlite_database_becomes_a_chroma_database(tmp_path: Path, tiny_model: OneGenModel) -> None:
    with sqlite3.connect(tmp_path / "chroma.sqlite3") as connection:
        connection.execute("PRAGMA user_version = 1")  # a non-empty file holding no tables
    connection.close()

    store = ChromaDocumentStore(tiny_model, path=tmp_path)
    store.add(TEXTS[:2], show_progress=False)

    assert ChromaDocumentStore(tiny_model, path=tmp_path).count() == 2


READ_ONLY_SCRIPT = """
import hashlib, stat, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.conftest import make_tiny_model
from onegen_integrations.errors import ReadOnlyStoreError
from onegen_integrations.store import ChromaDocumentStore

path = Path({path!r})
try:
    ChromaDocumentStore(make_tiny_model(), path=path, collection="docs")
    print("OPENED")
except ReadOnlyStoreError as error:
    print("REFUSED", error)
if (path / "chroma.sqlite3").exists():
    print("DIGEST", hashlib.sha256((path / "chroma.sqlite3").read_bytes()).hexdigest())
# Once the permission is back, the same process opens it.
for target in [path, *path.iterdir()] if path.exists() else [path.parent]:
    target.chmod(target.stat().st_mode | stat.S_IWUSR)
print("COUNT", ChromaDocumentStore(make_tiny_model(), path=path, collection="docs").count())
"""


def run_without_root_powers(script: str) -> str:
    """Run `script` where file permissions apply: as root, without the capabilities that bypass them."""
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv, so file permissions cannot be made to apply")
        # The file owner is root, so with these capabilities dropped its mode bits bind root too.
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_read_only_database_is_reported_as_read_only_and_left_unchanged(
    tmp_path: Path, tiny_model: OneGenModel
) -> None:
    path = tmp_path / "db"
    ChromaDocumentStore(tiny_model, path=path, collection="docs").add(TEXTS, show_progress=False)
    database = path / "chroma.sqlite3"
    digest = file_digest(database)
    for target in (path, database):
        target.chmod(target.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    output = run_without_root_powers(READ_ONLY_SCRIPT.format(root=str(Path(__file__).parents[1]), path=str(path)))

    assert f"REFUSED the Chroma database at {path} cannot be written" in output
    assert "chmod -R u+w" in output and "cp -r" in output
    assert f"COUNT {len(TEXTS)}" in output
    assert f"DIGEST {digest}" in output


def test_a_new_database_in_a_read_only_directory_is_reported_as_read_only(tmp_path: Path) -> None:
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o555)

    output = run_without_root_powers(
        READ_ONLY_SCRIPT.format(root=str(Path(__file__).parents[1]), path=str(parent / "db"))
    )

    assert f"REFUSED the Chroma database at {parent / 'db'} cannot be written" in output
    assert "COUNT 0" in output


# A Chroma server that goes away.


def test_an_add_cut_off_by_a_lost_server_is_finished_by_running_it_again(
    server: ChromaServer, tiny_model: OneGenModel
) -> None:
    store = ChromaDocumentStore(tiny_model, host="127.0.0.1", port=server.port, collection="remote")
    store.add(TEXTS, show_progress=False)
    embed = tiny_model.embed_documents
    calls: list[list[str]] = []

    def embed_then_lose_the_server(texts, **options):
        calls.append(list(texts))
        if len(calls) == 2:  # the first batch is written by now
            server.kill()
        return embed(texts, **options)

    tiny_model.embed_documents = embed_then_lose_the_server
    with pytest.raises(StoreWriteError, match="wrote 8 of 40 documents to collection 'remote'") as error:
        store.add(FACTS, batch_size=8, show_progress=False)
    tiny_model.embed_documents = embed
    message = str(error.value)
    assert f"127.0.0.1:{server.port} cannot be reached" in message and "chroma run" in message
    assert "run the same add" in message and "not embedded again" in message

    server.start()
    calls = count_embedded(tiny_model)
    assert set(store.stored([content_id(t) for t in FACTS])) == {content_id(t) for t in FACTS[:8]}
    assert store.add(FACTS, batch_size=8, show_progress=False) == [content_id(t) for t in FACTS]

    assert sorted(t for call in calls for t in call) == sorted(FACTS[8:])
    expected = {content_id(t): (t, None) for t in TEXTS + FACTS}
    assert ChromaDocumentStore(tiny_model, host="127.0.0.1", port=server.port, collection="remote").count() == 45
    assert snapshot(store) == expected
    top = store.search(tiny_model.embed_documents([FACTS[3]])[0], k=1)[0]  # written before the loss
    assert (top.text, top.score) == (FACTS[3], pytest.approx(1.0, abs=1e-5))


def test_a_lost_server_is_a_store_error_that_says_to_start_it(server: ChromaServer, tiny_model: OneGenModel) -> None:
    store = ChromaDocumentStore(tiny_model, host="127.0.0.1", port=server.port, collection="remote")
    store.add(TEXTS, metadatas=[{"source": "a.md"}] * len(TEXTS), show_progress=False)
    vector = tiny_model.embed_documents([TEXTS[0]])[0]
    server.kill()

    calls = [
        store.count,
        lambda: store.search(vector, k=1),
        lambda: store.stored([content_id(TEXTS[0])]),
        lambda: store.delete([content_id(TEXTS[0])]),
        lambda: store.prune({"source": "a.md"}, set()),
        lambda: store.metadata_values("source"),
    ]
    for call in calls:
        with pytest.raises(StoreError, match=f"127.0.0.1:{server.port} cannot be reached.*chroma run"):
            call()

    server.start()
    assert snapshot(store) == {content_id(t): (t, {"source": "a.md"}) for t in TEXTS}
