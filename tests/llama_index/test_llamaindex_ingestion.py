"""LlamaIndex's own ingestion paths with OneGenEmbedding: `IngestionPipeline` (a docstore that
skips what it has seen, worker processes) and `RayIngestionPipeline`, both into fingerprinted Chroma."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent
from llama_index.core.node_parser import MarkdownNodeParser
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.vector_stores.chroma import ChromaVectorStore

from onegen_integrations.errors import EmbeddingModelMismatchError, ModelNotShareableError
from onegen_integrations.llama_index import OneGenEmbedding
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from tests.conftest import make_tiny_model
from tests.llama_index.conftest import TEXTS


def load_quietly(path: Path, *, shared: bool = True) -> OneGenModel:
    """The tiny model saved at `path`, loaded without its untrained-tokens warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.shared(str(path)) if shared else OneGenModel.load(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved to a directory: other processes load it by this path."""
    return make_tiny_model().save(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def saved_model(model_dir: Path) -> OneGenModel:
    """This process's shared instance of the saved model: the one `OneGenEmbedding(str(model_dir))` uses."""
    return load_quietly(model_dir)


def documents(texts: list[str] = TEXTS) -> list[Document]:
    """The test texts as documents with stable ids, as a reader with `filename_as_id=True` gives."""
    return [Document(text=text, id_=f"doc-{i}") for i, text in enumerate(texts)]


def onegen_pipeline(embed_model: OneGenEmbedding, vector_store: ChromaVectorStore) -> IngestionPipeline:
    """A node parser, then OneGenEmbedding as the last transformation, a docstore, and the Chroma store.

    The parser gives each node its document as `ref_doc_id`, which the vector store deletes by
    when a document changes (a document used as its own node has none). It needs no tokenizer:
    `SentenceSplitter` pickles its tiktoken encoding, which a worker process would fetch from
    the network."""
    return IngestionPipeline(
        transformations=[MarkdownNodeParser(), embed_model],
        docstore=SimpleDocumentStore(),
        vector_store=vector_store,
    )


def stored(vector_store: ChromaVectorStore) -> dict[str, tuple[str, np.ndarray]]:
    """Each stored node id's text and vector."""
    got = vector_store.client.get(include=["documents", "embeddings"])
    rows = zip(got["ids"], got["documents"], got["embeddings"])
    return {id_: (text, np.asarray(vector)) for id_, text, vector in rows}


def embedded_texts(events: list[BaseEvent]) -> list[str]:
    """Every text embedded while the events were recorded."""
    return [chunk for event in events if isinstance(event, EmbeddingEndEvent) for chunk in event.chunks]


def assert_holds_the_models_vectors(vector_store: ChromaVectorStore, model: OneGenModel, nodes: list[BaseNode]) -> None:
    """The store holds `nodes` under their ids, each with the model's `[RD]` vector of the text
    LlamaIndex embeds (the node's content with its metadata)."""
    held = stored(vector_store)
    assert sorted(held) == sorted(node.id_ for node in nodes)
    expected = model.embed_documents([node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes])
    np.testing.assert_allclose([held[node.id_][1] for node in nodes], expected, atol=1e-5)


def test_the_pipeline_stores_the_models_vectors_for_each_node(model_dir, saved_model, chroma):
    embed_model = OneGenEmbedding(str(model_dir), embed_batch_size=3)
    vector_store = embed_model.chroma_vector_store(chroma, "ingest-once")
    nodes = onegen_pipeline(embed_model, vector_store).run(documents=documents())
    assert sorted(node.ref_doc_id for node in nodes) == [f"doc-{i}" for i in range(len(TEXTS))]
    assert_holds_the_models_vectors(vector_store, saved_model, nodes)


def test_a_second_run_embeds_nothing_the_docstore_has_seen(model_dir, chroma, recorded_events):
    embed_model = OneGenEmbedding(str(model_dir))
    pipeline = onegen_pipeline(embed_model, embed_model.chroma_vector_store(chroma, "ingest-twice"))
    pipeline.run(documents=documents())
    first = len(embedded_texts(recorded_events))
    assert pipeline.run(documents=documents()) == []
    assert first == len(TEXTS)
    assert len(embedded_texts(recorded_events)) == first
    assert pipeline.vector_store.client.count() == len(TEXTS)


def test_an_edited_document_alone_is_embedded_again_and_replaced(model_dir, saved_model, chroma, recorded_events):
    embed_model = OneGenEmbedding(str(model_dir))
    vector_store = embed_model.chroma_vector_store(chroma, "ingest-edit")
    pipeline = onegen_pipeline(embed_model, vector_store)
    kept = [node for node in pipeline.run(documents=documents()) if node.ref_doc_id != "doc-3"]
    edited = [*TEXTS[:3], "Port Halvey lies where the Oren meets the Ostrel Sea, north of Selbrook."]
    recorded_events.clear()
    (new,) = pipeline.run(documents=documents(edited))
    assert embedded_texts(recorded_events) == [new.get_content(metadata_mode=MetadataMode.EMBED)]
    assert_holds_the_models_vectors(vector_store, saved_model, [*kept, new])  # the old version is gone
    assert sorted(text for text, _ in stored(vector_store).values()) == sorted(edited)


def test_worker_processes_store_what_one_process_stores(model_dir, chroma):
    embed_model = OneGenEmbedding(str(model_dir))
    in_workers = embed_model.chroma_vector_store(chroma, "ingest-workers")
    in_process = embed_model.chroma_vector_store(chroma, "ingest-process")
    onegen_pipeline(embed_model, in_workers).run(documents=documents(), num_workers=2)
    onegen_pipeline(embed_model, in_process).run(documents=documents())
    # Node ids are random: match the two stores by text.
    from_workers, from_process = (dict(stored(store).values()) for store in (in_workers, in_process))
    assert sorted(from_workers) == sorted(from_process) == sorted(TEXTS)
    for text, vector in from_process.items():
        np.testing.assert_allclose(from_workers[text], vector, atol=1e-5)


def test_pickling_sends_the_model_name_not_its_weights(model_dir, saved_model):
    embed_model = OneGenEmbedding(saved_model, embed_batch_size=3)
    blob = pickle.dumps(embed_model)
    assert len(blob) < 10_000
    copy = pickle.loads(blob)
    assert (copy.model_name, copy.embed_batch_size, copy.backend) == (str(model_dir), 3, "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        assert copy.model.fingerprint == saved_model.fingerprint  # loaded again, from the directory


def test_an_embedding_over_a_model_built_in_memory_refuses_to_pickle(model):
    with pytest.raises(ModelNotShareableError, match=r"model\.save\(directory\)"):
        pickle.dumps(OneGenEmbedding(model))


def test_a_copy_refuses_a_model_that_changed_after_it_was_sent(tmp_path):
    make_tiny_model(seed=0).save(tmp_path)
    blob = pickle.dumps(OneGenEmbedding(load_quietly(tmp_path, shared=False)))
    make_tiny_model(seed=1).save(tmp_path)
    copy = pickle.loads(blob)
    with warnings.catch_warnings(), pytest.raises(EmbeddingModelMismatchError, match="files changed"):
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        copy.get_text_embedding("Selbrook lies on the River Tamsey.")


@pytest.fixture(scope="module")
def ray() -> Iterator[ModuleType]:
    """Ray, running a local two-CPU cluster for this module's Ray tests."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("llama_index.ingestion.ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_actors_embed_by_model_path_into_chroma(ray, model_dir, saved_model, chroma):
    from llama_index.ingestion.ray import RayIngestionPipeline, RayTransformComponent

    vector_store = OneGenEmbedding(str(model_dir)).chroma_vector_store(chroma, "ingest-ray")
    embed = RayTransformComponent(
        transform_class=OneGenEmbedding,
        transform_kwargs={"model": str(model_dir)},
        map_batches_kwargs={"batch_size": 2, "compute": ray.data.ActorPoolStrategy(size=1)},
    )
    nodes = RayIngestionPipeline(transformations=[embed], vector_store=vector_store).run(documents=documents())
    assert sorted(node.id_ for node in nodes) == [f"doc-{i}" for i in range(len(TEXTS))]
    assert_holds_the_models_vectors(vector_store, saved_model, list(nodes))
