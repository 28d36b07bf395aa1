"""Indexing on Ray workers into a Chroma server: the collection `index_paths` makes, workers that
die replaced, reruns that embed nothing, and another model stopped before any worker starts."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onegen_integrations.cli import main
from onegen_integrations.errors import DistributedIndexingError, EmbeddingModelMismatchError, ModelNotShareableError
from onegen_integrations.ingest import IndexReport, index_paths
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from onegen_integrations.ray_indexing import RayOptions, index_paths_on_ray, token_batches
from onegen_integrations.store import ChromaDocumentStore
from tests.conftest import make_tiny_model
from tests.ray_workers import DIE, FAIL, LOG, WORKER_DIR, ObservedWorker, logged
from tests.servers import ChromaServer

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

CHUNKS = 26
"""Chunks in the corpus: 20 records and a text file that splits into 6."""


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray for the module (2 CPUs); its workers' log and orders go in the folder yielded."""
    folder = tmp_path_factory.mktemp("ray-workers")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {WORKER_DIR: str(folder)}})
    try:
        yield folder
    finally:
        ray.shutdown()


@pytest.fixture
def worker_log(workers: Path) -> Path:
    """The workers' folder, with nothing logged or ordered yet."""
    for name in (LOG, DIE, FAIL):
        (workers / name).unlink(missing_ok=True)
    return workers


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model saved where workers load it by path."""
    return make_tiny_model().save(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> OneGenModel:
    return load(model_dir)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of many lengths with fields, and a text long enough to be chunked."""
    folder = tmp_path_factory.mktemp("corpus")
    records = [{"id": f"r{i}", "text": f"Record {i}: " + "the tide rises " * (i * 3), "shelf": i} for i in range(20)]
    (folder / "records.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (folder / "harbour.txt").write_text(" ".join(f"Boat {i} left the harbour of Corvant at dawn." for i in range(100)))
    return folder


@pytest.fixture(scope="module")
def indexed_on_ray(
    model: OneGenModel, corpus: Path, module_chroma_server: ChromaServer, workers: Path
) -> tuple[ChromaDocumentStore, IndexReport, list[list[str]]]:
    """The corpus indexed on two workers: the store, the report, and the batches embedded."""
    (workers / LOG).unlink(missing_ok=True)
    store = open_store(model, module_chroma_server, "on-ray")
    report = index_paths_on_ray(store, [corpus], OPTIONS, show_progress=False)
    return store, report, logged(workers)


OPTIONS = RayOptions(workers=2, batch_tokens=512, backend="torch", worker_class=ObservedWorker)


def load(directory: Path) -> OneGenModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.load(directory, backend="torch")


def open_store(model: OneGenModel, server: ChromaServer, collection: str) -> ChromaDocumentStore:
    return ChromaDocumentStore(model, host=server.host, port=server.port, collection=collection)


def contents(store: ChromaDocumentStore) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
    """Every id with its text, metadata and vector."""
    got = store.collection.get(include=["documents", "metadatas", "embeddings"])
    return {
        id_: (text, meta, np.asarray(vector))
        for id_, text, meta, vector in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
    }


def test_ray_workers_fill_the_collection_index_paths_fills(
    indexed_on_ray: tuple[ChromaDocumentStore, IndexReport, list[list[str]]],
    model: OneGenModel,
    corpus: Path,
    module_chroma_server: ChromaServer,
) -> None:
    store, report, batches = indexed_on_ray
    single = open_store(model, module_chroma_server, "in-process")

    expected = index_paths(single, [corpus], show_progress=False)

    assert report == dataclasses.replace(expected, collection=store.collection_name)
    assert report.added == CHUNKS and len(batches) > 2
    on_ray, in_process = contents(store), contents(single)
    assert sorted(on_ray) == sorted(in_process)
    for id_, (text, meta, vector) in in_process.items():
        assert on_ray[id_][:2] == (text, meta)
        np.testing.assert_allclose(on_ray[id_][2], vector, atol=1e-5)


def test_running_again_embeds_nothing(
    indexed_on_ray: tuple[ChromaDocumentStore, IndexReport, list[list[str]]], corpus: Path, worker_log: Path
) -> None:
    store, _, _ = indexed_on_ray

    again = index_paths_on_ray(store, [corpus], OPTIONS, show_progress=False)

    assert (again.added, again.replaced, again.unchanged, again.removed) == (0, 0, CHUNKS, 0)
    assert logged(worker_log) == []


def test_a_run_that_stopped_embeds_only_the_rest_when_run_again(
    model: OneGenModel, corpus: Path, module_chroma_server: ChromaServer, worker_log: Path
) -> None:
    store = open_store(model, module_chroma_server, "resumed")
    index_paths(store, [corpus], show_progress=False)
    lost = ["r3", "r11", "r17"]
    store.delete(lost)

    report = index_paths_on_ray(store, [corpus], OPTIONS, show_progress=False)

    assert (report.added, report.unchanged, store.count()) == (3, CHUNKS - 3, CHUNKS)
    assert sorted(id_ for batch in logged(worker_log) for id_ in batch) == sorted(lost)


def test_a_worker_killed_mid_run_is_replaced_and_its_batch_embedded_again(
    model: OneGenModel, corpus: Path, module_chroma_server: ChromaServer, worker_log: Path
) -> None:
    (worker_log / DIE).write_text("2")
    store = open_store(model, module_chroma_server, "killed")

    report = index_paths_on_ray(store, [corpus], OPTIONS, show_progress=False)

    assert not (worker_log / DIE).exists(), "no worker died"
    ids = store.collection.get(include=[])["ids"]
    assert report.added == store.count() == len(ids) == len(set(ids)) == CHUNKS
    assert {id_ for batch in logged(worker_log) for id_ in batch} == set(ids)


def test_an_error_in_a_worker_stops_the_run_with_one_error_that_says_to_run_again(
    model: OneGenModel, corpus: Path, module_chroma_server: ChromaServer, worker_log: Path
) -> None:
    (worker_log / FAIL).write_text("the disk is full")
    store = open_store(model, module_chroma_server, "failing")

    with pytest.raises(DistributedIndexingError, match="run the same indexing again to embed the rest") as error:
        index_paths_on_ray(store, [corpus], OPTIONS, show_progress=False)

    assert "the disk is full" in str(error.value.__cause__) and store.count() == 0


def test_workers_given_another_model_stop_the_run_before_any_embedding(
    model: OneGenModel, corpus: Path, module_chroma_server: ChromaServer, worker_log: Path, tmp_path: Path
) -> None:
    other = make_tiny_model(seed=1).save(tmp_path / "other")
    store = open_store(model, module_chroma_server, "other-workers")

    with pytest.raises(EmbeddingModelMismatchError, match="fingerprint"):
        index_paths_on_ray(store, [corpus], dataclasses.replace(OPTIONS, model=other), show_progress=False)

    assert store.count() == 0 and logged(worker_log) == []


def test_a_model_built_in_memory_is_refused_with_how_to_save_it(
    corpus: Path, module_chroma_server: ChromaServer, worker_log: Path
) -> None:
    store = open_store(make_tiny_model(), module_chroma_server, "built-in-memory")

    with pytest.raises(ModelNotShareableError, match=r"model.save\(directory\)"):
        index_paths_on_ray(store, [corpus], OPTIONS, show_progress=False)

    assert store.count() == 0 and logged(worker_log) == []


def test_a_collection_of_another_model_stops_onegen_index_ray_before_any_embedding(
    model_dir: Path,
    corpus: Path,
    module_chroma_server: ChromaServer,
    worker_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    filled = open_store(make_tiny_model(seed=1), module_chroma_server, "filled-by-another")
    filled.add(["Corvant has a lighthouse."], show_progress=False)
    server = ["--host", module_chroma_server.host, "--port", str(module_chroma_server.port)]

    status = main(["index", str(corpus), "--ray", "--model", str(model_dir), *server, "--collection", filled.collection_name])

    assert status == 2 and "was embedded by model 'tiny-1'" in capsys.readouterr().err
    assert filled.count() == 1 and logged(worker_log) == []


def test_onegen_index_ray_fills_a_chroma_server(
    model_dir: Path, corpus: Path, module_chroma_server: ChromaServer, workers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--host", module_chroma_server.host, "--port", str(module_chroma_server.port)]
    flags = ["--ray", "--workers", "2", "--backend", "torch", "--batch-size", "2", "--chunk-tokens", "256"]

    status = main(["index", str(corpus), *flags, "--model", str(model_dir), *server, "--collection", "cli"])

    assert status == 0
    assert f"{CHUNKS} added, 0 replaced, 0 unchanged, 0 removed; collection 'cli' holds {CHUNKS}" in capsys.readouterr().out
    assert open_store(load(model_dir), module_chroma_server, "cli").count() == CHUNKS


def test_batches_are_cut_by_padded_tokens_so_long_documents_share_fewer() -> None:
    tokens = {"a": 10, "b": 10, "c": 20, "d": 50, "e": 60, "f": 200}

    assert token_batches(list(tokens), tokens, batch_tokens=100) == [["a", "b", "c"], ["d"], ["e"], ["f"]]
    assert token_batches(list(tokens), tokens, batch_tokens=200) == [["a", "b", "c", "d"], ["e"], ["f"]]
