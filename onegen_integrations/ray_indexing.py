"""Indexing on a Ray cluster: Ray Data actors embed, this process writes to Chroma.

Files are read and chunked here exactly as `index_paths` does (the same chunks, the same ids)
and checked against the collection first: only chunks that are new or whose text changed go
to the workers, so a rerun embeds nothing and a run that stopped embeds only the rest. The
chunks to embed are sorted by length and cut into batches by token count. Each worker is a
Ray actor that loads the model once; a worker that dies is restarted and its batch retried.
This process writes the vectors as they arrive, in upserts Chroma accepts, then prunes as
`index_paths` does and returns the same `IndexReport`.

    store = ChromaDocumentStore(OneGenModel.load("default"), host="chroma.internal", port=8000)
    report = index_paths_on_ray(store, ["docs/"], RayOptions(address="auto", workers=4, gpus_per_worker=1))

Ray is imported only when a run starts: `pip install "onegen-integrations[ray]"`.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from onegen_integrations.backends.selection import BackendName
from onegen_integrations.errors import (
    DistributedIndexingError,
    EmbeddingModelMismatchError,
    ExtraNotInstalledError,
    InvalidOptionError,
)
from onegen_integrations.ingest import IndexReport, SourceChunks, chunk_sources, finish_index, plan_index, read_sources
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning, require_shareable_name, shareable_name
from onegen_integrations.store import AddPlan, ChromaDocumentStore, check_recorded_model


class EmbeddingWorker:
    """What each Ray actor runs: load the model once, then embed batches of documents.

    Each row it is given holds the `ids` and `texts` of one batch; it returns one row per
    document: its `id`, its `vector`, and the `fingerprint` of the model that embedded it,
    which the driver checks before writing. Subclass it to change how a worker loads or embeds.
    """

    def __init__(self, model: str, backend: BackendName, threads: int) -> None:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # one bar per worker start would bury the driver's
        with warnings.catch_warnings():
            # The driver loaded the same model and has said so once.
            warnings.simplefilter("ignore", UntrainedRetrievalWarning)
            self.model = OneGenModel.load(model, backend=backend, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed each row's texts in one forward pass."""
        ids: list[str] = []
        vectors = []
        for row_ids, texts in zip(batch["ids"], batch["texts"]):
            ids += [str(id_) for id_ in row_ids]
            vectors.append(self.model.embed_documents([str(text) for text in texts], batch_size=len(texts)))
        return {
            "id": np.array(ids, dtype=object),
            "vector": np.concatenate(vectors),
            "fingerprint": np.array([self.model.fingerprint] * len(ids), dtype=object),
        }


@dataclass(frozen=True)
class RayOptions:
    """Where the embedding runs and how: the Ray cluster, its workers, and what each loads.

    Numbers are checked on construction (`InvalidOptionError`).
    """

    address: str | None = None
    """`None` or `"local"`: a local Ray started for the run (or the one `RAY_ADDRESS`
    names); `"auto"`: the cluster `ray start` made; or an address such as `ray://HOST:10001`.
    A Ray this process already started is used as it is."""
    workers: int = 2
    """Actors embedding at once; each loads the model once."""
    gpus_per_worker: float = 0
    """GPUs each worker takes: 1 for a GPU each, 0.5 for two workers per GPU, 0 on CPUs."""
    cpus_per_worker: float = 1
    """CPUs each worker takes (and its threads: a whole number of at least 1)."""
    batch_tokens: int = 8192
    """Tokens per forward pass: a batch holds as many chunks as fit, counted at its longest."""
    model: str | Path | None = None
    """What every worker loads: `"default"`, a model directory or a .gguf file, at the same path
    on every node (default: what the store's model was loaded from)."""
    backend: BackendName = "auto"
    """The workers' backend (see `OneGenModel.load`)."""
    worker_class: type[EmbeddingWorker] = EmbeddingWorker
    """The class each actor runs."""

    def __post_init__(self) -> None:
        _check_number("workers", self.workers, whole=True, least=1)
        _check_number("batch_tokens", self.batch_tokens, whole=True, least=1)
        _check_number("gpus_per_worker", self.gpus_per_worker, whole=False, least=0)
        _check_number("cpus_per_worker", self.cpus_per_worker, whole=False, least=0)


def index_paths_on_ray(
    store: ChromaDocumentStore,
    paths: Sequence[str | Path],
    options: RayOptions | None = None,
    *,
    chunk_tokens: int = 256,
    overlap_tokens: int = 32,
    follow_symlinks: bool = False,
    show_progress: bool = True,
) -> IndexReport:
    """`index_paths` with the embedding done by Ray workers (`options`); the same result.

    Reading and chunking run here with the store's model, so ids and chunks are those
    `index_paths` makes. See `index_chunks_on_ray` for what is checked and when.
    """
    require_ray()
    sources = read_sources(paths, follow_symlinks=follow_symlinks)
    chunked = chunk_sources(sources, store.model, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
    return index_chunks_on_ray(store, chunked, options, show_progress=show_progress)


def index_chunks_on_ray(
    store: ChromaDocumentStore, read: SourceChunks, options: RayOptions | None = None, *, show_progress: bool = True
) -> IndexReport:
    """`index_chunks` with the embedding done by Ray workers: write, prune, report.

    Before any worker starts, the model the workers will load is checked against the
    collection's recorded fingerprint (`EmbeddingModelMismatchError`) and the chunks against
    the collection: Ray starts only when something is new or changed. Every batch is
    checked again as it arrives, so vectors from a worker that loaded other weights are
    never written. A worker whose process dies is restarted and its batch run again; an
    error raised in a worker stops the run with `DistributedIndexingError`. What was written
    is kept either way, and running again embeds only the rest.
    """
    ray = require_ray()
    options = options or RayOptions()
    model = _worker_model(store, options)
    plan = plan_index(store, read)
    embedded = _embedded_on_ray(ray, plan.add, model, store, options)
    store.write_plan(plan.add, embedded, show_progress=show_progress)
    return finish_index(store, plan)


def token_batches(ids: Sequence[str], tokens: Mapping[str, int], batch_tokens: int) -> list[list[str]]:
    """`ids`, shortest first, cut into batches whose padded size (members × the longest's
    tokens) stays within `batch_tokens`; a longer document is a batch of its own."""
    batches: list[list[str]] = []
    for id_ in ids:
        if batches and (len(batches[-1]) + 1) * tokens[id_] <= batch_tokens:
            batches[-1].append(id_)
        else:
            batches.append([id_])
    return batches


def _embedded_on_ray(
    ray: ModuleType, plan: AddPlan, model: str, store: ChromaDocumentStore, options: RayOptions
) -> Iterator[tuple[list[str], np.ndarray]]:
    """The vectors of `plan.to_embed` as the workers send them: `(ids, vectors)` per block."""
    if not plan.to_embed:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, logging_level=logging.WARNING)
    try:
        batches = token_batches(plan.to_embed, plan.tokens, options.batch_tokens)
        rows = [{"ids": ids, "texts": [plan.texts[id_] for id_ in ids]} for ids in batches]
        # One block per batch: a dead worker's batch is all that runs again. Ray Data restarts
        # dead actors and retries their tasks without limit by default (max_restarts=-1,
        # max_task_retries=-1); map_batches' arguments to change that are deprecated in Ray 2.60.
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            options.worker_class,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(options.workers, len(rows))),
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker,
            fn_constructor_kwargs={
                "model": model,
                "backend": options.backend,
                "threads": max(1, int(options.cpus_per_worker)),
            },
        )
        # The driver's bar counts documents written; Ray's own bars would draw over it.
        dataset.context.enable_progress_bars = False
        dataset.context.print_on_execution_start = False
        try:
            for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                _check_fingerprints(block["fingerprint"], model, store)
                yield list(block["id"]), block["vector"]
        except ray.exceptions.RayError as error:
            raise DistributedIndexingError(
                f"a Ray worker failed ({type(error).__name__}; Ray's log above shows the worker's error): what "
                f"was written to collection {store.collection_name!r} is kept; fix the cause (the model path on "
                "every node, the workers' memory: lower batch_tokens) and run the same indexing again to embed the rest"
            ) from error
    finally:
        if started:
            ray.shutdown()


def _worker_model(store: ChromaDocumentStore, options: RayOptions) -> str:
    """What the workers load, as a name every process resolves alike; a model other than the
    store's is loaded here first and checked against the collection's fingerprint."""
    if options.model is None:
        return require_shareable_name(store.model, "Ray workers (give RayOptions(model=...) to choose)")
    name = shareable_name(options.model) or str(options.model)
    if name != shareable_name(store.model.name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UntrainedRetrievalWarning)
            check_recorded_model(store.collection, OneGenModel.load(name, backend=options.backend))
    return name


def _check_fingerprints(fingerprints: np.ndarray, model: str, store: ChromaDocumentStore) -> None:
    """Refuse vectors from a worker whose model differs from the store's."""
    for fingerprint in set(fingerprints):
        if fingerprint != store.model.fingerprint:
            raise EmbeddingModelMismatchError(
                f"a Ray worker loaded {model!r} with fingerprint {fingerprint}, but collection "
                f"{store.collection_name!r} holds vectors of fingerprint {store.model.fingerprint}: nothing it "
                "embedded was written. Give every node the same model files (for 'default', the same "
                "onegen-integrations version)"
            )


def _check_number(name: str, value: Any, *, whole: bool, least: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if whole else numbers.Real) or not value >= least:
        raise InvalidOptionError(name, value, f"{'an integer' if whole else 'a number'}, at least {least:g}")


def require_ray() -> ModuleType:
    """Ray with Ray Data, or `ExtraNotInstalledError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ExtraNotInstalledError(
            f"indexing on Ray needs Ray Data ({error.name} is missing): pip install \"onegen-integrations[ray]\""
        ) from error
    return ray
