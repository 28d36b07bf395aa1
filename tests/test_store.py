"""ChromaDocumentStore: persistence, model fingerprints, idempotent resumable adds, search."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from onegen_integrations.errors import (
    DocumentTooLongError,
    EmbeddingModelMismatchError,
    EmptyStoreError,
    EmptyTextError,
    NotAChromaDatabaseError,
    StoreError,
)
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import RetrievalQuery
from onegen_integrations.store import ChromaDocumentStore, content_id
from tests.conftest import make_tiny_model

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
        store.add(TEXTS[1:4] + [bad_text], batch_size=1, show_progress=False)

    assert calls == []
    assert store.count() == 1


def test_mismatched_lengths_are_refused(store: ChromaDocumentStore) -> None:
    with pytest.raises(ValueError, match="2 texts, 1 ids"):
        store.add(TEXTS[:2], ids=["one"], show_progress=False)
    assert store.count() == 0


def test_one_id_for_two_texts_is_refused(store: ChromaDocumentStore) -> None:
    with pytest.raises(ValueError, match="two different texts"):
        store.add(TEXTS[:2], ids=["same", "same"], show_progress=False)
    assert store.count() == 0


def test_a_directory_of_other_files_is_not_opened(tmp_path: Path, tiny_model: OneGenModel) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(NotAChromaDatabaseError, match="no chroma.sqlite3"):
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


def test_searching_an_empty_collection_says_to_index_first(store: ChromaDocumentStore) -> None:
    with pytest.raises(EmptyStoreError, match="onegen index"):
        store.search(np.ones(store.model.dimension), k=1)


def test_a_document_is_its_own_nearest_neighbour(store: ChromaDocumentStore) -> None:
    store.add(TEXTS, show_progress=False)
    vector = store.model.embed_documents([TEXTS[2]])[0]

    hits = store.search(vector, k=3)

    assert [h.text for h in hits][0] == TEXTS[2]
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
    store.add(TEXTS[:2], ids=["a", "b"], metadatas=[{"topic": "computing", "year": 1843}, {"city": "Paris"}],
              show_progress=False)
    calls = count_embedded(store.model)

    store.add(TEXTS[:2], ids=["a", "b"], metadatas=[{"topic": "history"}, None], show_progress=False)

    assert calls == []
    assert store.stored(["a", "b", "c"]) == {"a": (TEXTS[0], {"topic": "history"}), "b": (TEXTS[1], None)}


def test_prune_deletes_only_matching_documents_not_kept(store: ChromaDocumentStore) -> None:
    store.add(TEXTS, ids=list("abcde"), metadatas=[{"source": "x"}] * 3 + [{"source": "y"}] * 2, show_progress=False)

    assert sorted(store.prune({"source": "x"}, {"b"})) == ["a", "c"]

    assert sorted(store.stored(list("abcde"))) == ["b", "d", "e"]
    assert store.sources() == {"x", "y"}


def test_an_empty_collection_made_elsewhere_is_claimed_for_the_model(
    tmp_path: Path, tiny_model: OneGenModel
) -> None:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path):
    """A real Chroma server (`chroma run`) on a free local port."""
    port = free_port()
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    process = subprocess.Popen(
        [chroma, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma run did not start within 60 s")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


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
