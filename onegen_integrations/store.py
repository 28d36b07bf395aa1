"""`ChromaDocumentStore`: documents embedded by a OneGen model, kept in Chroma, searched by `[RQ]` vectors."""

from __future__ import annotations

import hashlib
import operator
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings
from chromadb.errors import ChromaError
from tqdm.auto import tqdm

from onegen_integrations.chroma_rules import check_chroma_sqlite, check_texts, checked_metadata, is_utf8
from onegen_integrations.errors import (
    EmbeddingModelMismatchError,
    EmptyStoreError,
    InvalidDocumentError,
    InvalidQueryError,
    NotAChromaDatabaseError,
    ReadOnlyStoreError,
    StoreError,
    StoreWriteError,
)
from onegen_integrations.locations import DEFAULT_COLLECTION, DEFAULT_PATH, SQLITE_FILE
from onegen_integrations.model import OneGenModel
from onegen_integrations.retrieval import Hit, RetrievalQuery

FINGERPRINT_KEY = "onegen_fingerprint"
DIMENSION_KEY = "onegen_dimension"
MODEL_KEY = "onegen_model"



def content_id(text: str) -> str:
    """The id a document gets when none is given: the first 16 hex digits of its sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_k(k: int, name: str = "k") -> int:
    """`k` as an int; `InvalidQueryError` unless it is a whole number of at least 1."""
    try:
        whole = operator.index(k)
    except TypeError:
        raise InvalidQueryError(f"{name} must be a whole number of at least 1, got {k!r}") from None
    if whole < 1:
        raise InvalidQueryError(f"{name} must be at least 1, got {whole}: ask for one document or more")
    return whole


@dataclass(frozen=True)
class AddPlan:
    """An add checked against the collection, nothing written yet (`ChromaDocumentStore.plan_add`)."""

    ids: list[str]
    """The id of every text given, in order (what `add` returns)."""
    texts: dict[str, str]
    """The text of each distinct id."""
    metadatas: dict[str, dict[str, Any] | None]
    """The metadata to write for each distinct id (keys that are gone as None: Chroma merges)."""
    stored: dict[str, tuple[str, dict[str, Any] | None]]
    """What the collection held for these ids before: text and metadata."""
    to_embed: list[str]
    """Ids that are new or whose text changed: to embed and write, shortest text first."""
    tokens: dict[str, int]
    """The token count of each text in `to_embed`."""
    retagged: list[str]
    """Ids stored with the same text whose metadata changed: updated without embedding."""


class ChromaDocumentStore:
    """A Chroma collection of documents embedded with one `OneGenModel` (cosine space).

    Embedded and persistent by default (`path`); a Chroma server with `host`/`port`; or any
    Chroma client passed as `client` (e.g. `chromadb.EphemeralClient()` for throwaway use).
    The collection records the model's fingerprint, so a collection filled by another model
    refuses to open instead of returning meaningless neighbours. Chroma's own embedding
    function is never used: every vector comes from the OneGen model.

    Example:
        store = ChromaDocumentStore(model, path="my-db")
        store.add(["Ada Lovelace wrote the first program."])
        hits = store.search(model.embed_query("who wrote the first program?"), k=1)
    """

    def __init__(
        self,
        model: OneGenModel,
        *,
        path: str | Path = DEFAULT_PATH,
        collection: str = DEFAULT_COLLECTION,
        host: str | None = None,
        port: int | None = None,
        client: ClientAPI | None = None,
    ) -> None:
        if client is not None and host is not None:
            raise ValueError("give either client or host/port, not both")
        if port is not None and host is None:
            raise ValueError("port needs host: give the Chroma server's host as well")
        self.model = model
        self.client: ClientAPI = client or _open_client(Path(path).expanduser(), host, port)
        self.collection_name = collection
        self.collection: Collection = self._open_collection(collection)

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        batch_size: int = 32,
        show_progress: bool = True,
    ) -> list[str]:
        """Embed and store `texts`; return the id of each text, in order.

        Ids default to `content_id(text)`; a text given twice is stored once. Every input
        (text, id, and metadata by Chroma's rules) is checked before anything is embedded or
        written, so a bad one raises `InvalidDocumentError` and leaves the collection as it
        was. A metadata value of None means "no value": the key is not stored. An id the
        collection already holds with the same text is not embedded again (only its metadata
        is brought up to date), so re-running an add that failed partway (`StoreWriteError`)
        finishes it cheaply; an id that now has another text is embedded and replaced.
        (`plan_add` then `write_plan` are the same add in two steps.)
        """
        plan = self.plan_add(texts, ids, metadatas)
        self.write_plan(plan, self.embed_plan(plan, batch_size=batch_size), show_progress=show_progress)
        return plan.ids

    def plan_add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> AddPlan:
        """Check an `add` and compare it with the collection, writing nothing: what to embed and write.

        Raises what `add` raises for bad input. Carry the plan out with `write_plan`, the
        vectors coming from `embed_plan` (this process) or from anywhere else (Ray workers).
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not one string")
        if isinstance(ids, str):
            raise TypeError("pass a list of ids, one per text, not one string")
        if isinstance(metadatas, Mapping):
            raise TypeError("pass a list of metadatas, one per text, not one mapping")
        texts = list(texts)
        check_texts(texts)
        ids = [content_id(text) for text in texts] if ids is None else list(ids)
        metas = [None] * len(texts) if metadatas is None else list(metadatas)
        if not len(texts) == len(ids) == len(metas):
            raise ValueError(
                f"got {len(texts)} texts, {len(ids)} ids and {len(metas)} metadatas: give one of each per text"
            )
        records = self._checked_records(texts, ids, metas)
        stored = self.stored(list(records))
        missing = [id_ for id_ in records if id_ not in stored or stored[id_][0] != records[id_][0]]
        # Shortest first across the whole call: each embedding batch pads to similar lengths.
        tokens = {id_: self.model.count_tokens(records[id_][0]) for id_ in missing}
        missing.sort(key=tokens.__getitem__)
        return AddPlan(
            ids=ids,
            texts={id_: text for id_, (text, _) in records.items()},
            # Chroma merges metadata on write: keys that are gone must be written as None.
            metadatas={id_: _replacing(stored.get(id_, ("", None))[1], meta) for id_, (_, meta) in records.items()},
            stored=stored,
            to_embed=missing,
            tokens=tokens,
            retagged=[id_ for id_ in records if id_ in stored and stored[id_] != records[id_] and id_ not in missing],
        )

    def embed_plan(self, plan: AddPlan, *, batch_size: int = 32) -> Iterator[tuple[list[str], np.ndarray]]:
        """The vectors `plan` needs, embedded here by the store's model as they are asked for:
        `(ids, vectors)` per batch of `batch_size` documents."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        step = min(batch_size, self.client.get_max_batch_size())
        batches = [plan.to_embed[start : start + step] for start in range(0, len(plan.to_embed), step)]
        return ((ids, self.model.embed_documents([plan.texts[id_] for id_ in ids], batch_size=step)) for ids in batches)

    def write_plan(
        self, plan: AddPlan, embedded: Iterable[tuple[Sequence[str], np.ndarray]], *, show_progress: bool = True
    ) -> None:
        """Carry out `plan`: bring the metadata of `plan.retagged` up to date, then store each
        batch of `(ids, vectors)` that `embedded` yields for the ids of `plan.to_embed` (unit
        vectors of the store's model, or of a model with its fingerprint).

        Writes are upserts of at most Chroma's `get_max_batch_size()` documents, so a batch
        written twice (a retried worker) is stored once. A write that fails raises
        `StoreWriteError` saying how many were written; running the add again finishes it.
        """
        written = 0
        total = len(plan.retagged) + len(plan.to_embed)
        try:
            for batch in self._batches(plan.retagged):
                self.collection.update(ids=batch, metadatas=[plan.metadatas[id_] for id_ in batch])
                written += len(batch)
            unchanged = len(plan.texts) - len(plan.to_embed)
            with tqdm(
                total=len(plan.texts), initial=unchanged, disable=not show_progress, unit="doc", desc="indexing"
            ) as bar:
                step = self.client.get_max_batch_size()
                for ids, vectors in embedded:
                    ids = list(ids)
                    if len(vectors) != len(ids):
                        raise ValueError(f"got {len(vectors)} vectors for {len(ids)} ids: give one vector per id")
                    for start in range(0, len(ids), step):
                        batch = ids[start : start + step]
                        self.collection.upsert(
                            ids=batch,
                            embeddings=vectors[start : start + step],
                            documents=[plan.texts[id_] for id_ in batch],
                            metadatas=[plan.metadatas[id_] for id_ in batch],
                        )
                        written += len(batch)
                        bar.update(len(batch))
        except (httpx.HTTPError, ChromaError) as error:
            raise self._write_failed(error, written, total) from error

    def search(
        self, vector: np.ndarray | Sequence[float], k: int = 4, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        """The `k` documents nearest to `vector`, best first; `score` is cosine similarity.

        `where` is a Chroma metadata filter, e.g. `{"source": "notes.md"}`. Fewer than `k`
        hits come back when the collection (or the filter) holds fewer documents. A `k`
        below 1 or a vector of the wrong size, or with NaN, infinite or only zero values,
        raises `InvalidQueryError`.
        """
        k = check_k(k)
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.model.dimension:
            raise InvalidQueryError(
                f"query vector has {vector.shape[0]} values, the model's have {self.model.dimension}: "
                "embed the query with the store's model (model.embed_query)"
            )
        if not np.isfinite(vector).all():
            raise InvalidQueryError(
                f"query vector holds {int((~np.isfinite(vector)).sum())} NaN or infinite values (as float32), "
                "so every score would be NaN: embed the query again with model.embed_query; if the model "
                "itself returns such vectors, its weights are broken"
            )
        if not vector.any():
            raise InvalidQueryError(
                "query vector is all zeros, which has no direction to compare by cosine: embed the query "
                "with model.embed_query"
            )
        count = self.count()
        if count == 0:
            raise EmptyStoreError(
                f"collection {self.collection_name!r} holds no documents: index documents first "
                f"(onegen index PATH... --collection {self.collection_name})"
            )
        with self._reaching("searching"):
            result = self.collection.query(
                query_embeddings=[vector],
                n_results=min(k, count),
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        return [
            Hit(id=id_, text=text or "", score=1.0 - float(distance), metadata=dict(meta or {}))
            for id_, text, meta, distance in zip(
                result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0]
            )
        ]

    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        """The `Retriever` protocol: the best `query.k` hits for the engine's `[RQ]` vector."""
        return self.search(query.vector, query.k)

    def count(self) -> int:
        """How many documents the collection holds."""
        with self._reaching("counting documents"):
            return self.collection.count()

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id (unknown ids are ignored)."""
        with self._reaching("deleting documents"):
            for batch in self._batches(list(ids)):
                self.collection.delete(ids=batch)

    def prune(self, where: dict[str, Any], keep: AbstractSet[str]) -> list[str]:
        """Delete the documents that match `where` but are not in `keep`; return their ids.

        After a source is indexed again, `prune({"source": path}, its_new_ids)` removes what
        only its earlier version had (chunks of edited text, documents taken out of it).
        """
        with self._reaching("listing documents to prune"):
            stale = [id_ for id_ in self.collection.get(where=where, include=[])["ids"] if id_ not in keep]
        self.delete(stale)
        return stale

    def metadata_values(self, key: str) -> set[str]:
        """Every string value of metadata `key` in the collection.

        `onegen index` records each file under `onegen_file`, so `metadata_values("onegen_file")`
        lists the files indexed, e.g. to prune the ones deleted since.
        """
        found: set[str] = set()
        with self._reaching(f"listing the values of metadata {key!r}"):
            step = self.client.get_max_batch_size()
            for offset in range(0, self.count(), step):
                metas = self.collection.get(include=["metadatas"], limit=step, offset=offset)["metadatas"]
                found.update(m[key] for m in metas if m and isinstance(m.get(key), str))
        return found

    def stored(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """The text and metadata the collection holds for each of `ids` it has."""
        stored: dict[str, tuple[str, dict[str, Any] | None]] = {}
        with self._reaching("reading documents"):
            for batch in self._batches(list(ids)):
                got = self.collection.get(ids=batch, include=["documents", "metadatas"])
                for id_, text, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                    stored[id_] = (text or "", dict(meta) if meta else None)
        return stored

    def _open_collection(self, name: str) -> Collection:
        metadata = collection_metadata(self.model)
        try:
            with self._reaching(f"opening collection {name!r}"):
                collection = self.client.get_or_create_collection(
                    name,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=metadata,
                    embedding_function=None,
                )
        except ChromaError as error:
            raise StoreError(f"cannot open collection {name!r}: {error}") from error
        # Both checks come before the claim below, so a collection this store refuses is left as it was.
        check_cosine(collection)
        recorded = dict(collection.metadata or {})
        if FINGERPRINT_KEY not in recorded:
            with self._reaching(f"opening collection {name!r}"):
                if collection.count():
                    raise EmbeddingModelMismatchError(
                        f"collection {name!r} holds documents embedded by an unknown model (no OneGen "
                        "fingerprint recorded): re-index them into a new collection with this model"
                    )
                # An empty collection made by other tools: claim it for this model.
                collection.modify(metadata={**recorded, **metadata})
        check_recorded_model(collection, self.model)
        return collection

    def _checked_records(
        self, texts: list[str], ids: list[Any], metas: list[Any]
    ) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """Validate every input; map each unique id to its text and metadata (first wins)."""
        records: dict[str, tuple[str, dict[str, Any] | None]] = {}
        first_index: dict[str, int] = {}
        for i, (text, id_, meta) in enumerate(zip(texts, ids, metas)):
            if not isinstance(id_, str) or not id_:
                raise InvalidDocumentError(
                    f"document {i} has id {id_!r}: ids must be non-empty strings; nothing was written"
                )
            if not is_utf8(id_):
                raise InvalidDocumentError(
                    f"document {i} has id {id_!r}, which is not valid UTF-8 (a lone surrogate): give it "
                    "another id; nothing was written"
                )
            checked = checked_metadata(meta, f"document {i} ({id_!r})")
            if id_ in records and records[id_][0] != text:
                raise InvalidDocumentError(
                    f"id {id_!r} is given to two different texts (documents {first_index[id_]} and {i}): "
                    "give each text its own id; nothing was written"
                )
            first_index.setdefault(id_, i)
            records.setdefault(id_, (text, checked))
        # Embedding happens batch by batch, after earlier batches are written, so every
        # text is checked (empty, too long) here, up front.
        self.model.encode_texts(texts, self.model.config.document_template)
        return records

    def _batches(self, ids: list[str]) -> Iterator[list[str]]:
        """`ids` in slices of the size Chroma takes in one call."""
        step = self.client.get_max_batch_size()
        return (ids[start : start + step] for start in range(0, len(ids), step))

    @contextmanager
    def _reaching(self, doing: str) -> Iterator[None]:
        """Turn a lost server or a read-only database, met while `doing`, into a `StoreError` saying what to do."""
        try:
            yield
        except (httpx.TransportError, ChromaError) as error:
            failure = _failure(self.client, error)
            if failure is None:
                raise
            kind, cause, fix = failure
            raise kind(f"{doing} failed: {cause}: {fix}") from error

    def _write_failed(self, error: Exception, written: int, total: int) -> StoreError:
        """The error for an add that wrote `written` of `total` documents before `error`."""
        kind, cause, fix = _failure(self.client, error) or (
            StoreWriteError,
            f"Chroma refused the write ({type(error).__name__}: {error})",
            "",
        )
        then = f"{fix}, then " if fix else ""
        return (ReadOnlyStoreError if kind is ReadOnlyStoreError else StoreWriteError)(
            f"wrote {written} of {total} documents to collection {self.collection_name!r} before the write "
            f"failed ({cause}): {then}run the same add (or onegen index) again to finish; what was written "
            "is kept and is not embedded again"
        )


def _failure(client: ClientAPI, error: Exception) -> tuple[type[StoreError], str, str] | None:
    """What `error` says about the store (error type, cause, what to do), or None if nothing known."""
    settings = client.get_settings()
    if isinstance(error, httpx.TransportError):
        host, port = settings.chroma_server_host, settings.chroma_server_http_port
        return (
            StoreError,
            f"the Chroma server at {host}:{port} cannot be reached ({error})",
            f"start it (`chroma run --path DIR --host {host} --port {port}`) or check the host and port",
        )
    if isinstance(error, ChromaError) and _is_read_only(error):
        if settings.chroma_server_host:
            where = f"of the Chroma server at {settings.chroma_server_host}:{settings.chroma_server_http_port}"
            fix = "give the server's --path directory write permission, then restart the server"
            return ReadOnlyStoreError, f"the database {where} cannot be written ({error})", fix
        path = settings.persist_directory
        return ReadOnlyStoreError, f"the database at {path} cannot be written ({error})", _read_only_fix(path)
    return None


def _is_read_only(error: Exception) -> bool:
    message = str(error)
    return "readonly database" in message or "Permission denied" in message


def _read_only_fix(path: str | Path) -> str:
    return (
        f"give it write permission (chmod -R u+w {path}), or copy it somewhere writable "
        f"(cp -r {path} NEW_DIR) and open the copy; Chroma needs write access even to search"
    )


def _replacing(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """Metadata that, merged into `old` the way Chroma writes it, leaves exactly `new`."""
    gone = {key: None for key in old or {} if key not in (new or {})}
    return {**gone, **new} if new else gone or None


def collection_metadata(model: OneGenModel) -> dict[str, Any]:
    """Chroma collection metadata recording which model fills the collection."""
    return {FINGERPRINT_KEY: model.fingerprint, DIMENSION_KEY: model.dimension, MODEL_KEY: model.name}


def check_recorded_model(collection: Collection, model: OneGenModel) -> None:
    """Raise `EmbeddingModelMismatchError` if `collection` records another model's fingerprint."""
    recorded = dict(collection.metadata or {})
    if FINGERPRINT_KEY in recorded:
        check_same_model(recorded[FINGERPRINT_KEY], recorded.get(MODEL_KEY), model, collection.name)


def check_same_model(fingerprint: str, built_by: str | None, model: OneGenModel, collection: str) -> None:
    """Raise `EmbeddingModelMismatchError` unless `fingerprint` (of the model that filled
    `collection`, named `built_by`) is `model`'s."""
    if fingerprint != model.fingerprint:
        raise EmbeddingModelMismatchError(
            f"collection {collection!r} was embedded by model {built_by!r} (fingerprint {fingerprint}), "
            f"but model {model.name!r} has fingerprint {model.fingerprint}: its vectors are not "
            "comparable. Re-index the documents into a new collection with this model, or load the "
            "model that built it"
        )


def check_cosine(collection: Collection) -> None:
    """Raise `StoreError` unless `collection` measures cosine distance (Chroma's default is l2)."""
    configuration = collection.configuration or {}
    space = (configuration.get("hnsw") or configuration.get("spann") or {}).get("space", "l2")
    if space != "cosine":
        raise StoreError(
            f"collection {collection.name!r} measures {space} distance, OneGen needs cosine: re-index "
            "into a collection created with configuration={'hnsw': {'space': 'cosine'}} "
            "(ChromaDocumentStore and OneGenRetriever.from_texts create them so)"
        )


def _open_client(path: Path, host: str | None, port: int | None) -> ClientAPI:
    # Telemetry off: the store must work on machines with no network, and must not phone
    # home. A fresh Settings each time: chromadb's HttpClient writes its server settings
    # into the object it is given, which would turn a later embedded client into a remote one.
    settings = Settings(anonymized_telemetry=False)
    if host is not None:
        try:
            return chromadb.HttpClient(host=host, port=port or 8000, settings=settings)
        except ValueError as error:
            raise StoreError(
                f"cannot reach the Chroma server at {host}:{port or 8000} ({error}): start it with "
                "`chroma run --path DIR --port PORT`, or leave out host to use an embedded database"
            ) from error
    if path.exists() and not path.is_dir():
        raise NotAChromaDatabaseError(
            f"{path} is a file, not a Chroma database directory: give a new directory or one holding {SQLITE_FILE}"
        )
    database = path / SQLITE_FILE
    if path.is_dir() and not database.exists() and any(path.iterdir()):
        raise NotAChromaDatabaseError(
            f"{path} holds other files and no {SQLITE_FILE}, so it is not a Chroma database: "
            "give a new or empty directory, or an existing Chroma database"
        )
    check_chroma_sqlite(database)
    # Chroma 1.5 writes to its database as it opens it, even only to search: a read-only one
    # cannot be used at all, and Chroma's own error for it reads like corruption.
    for target in (path, database):
        if target.exists() and not os.access(target, os.W_OK):
            raise ReadOnlyStoreError(
                f"the Chroma database at {path} cannot be written ({target} is read-only): {_read_only_fix(path)}"
            )
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except ChromaError as error:
        # Chroma keeps the half-started client under this path; without this, the next try in
        # this process (say, after the permissions are fixed) gets it back and fails obscurely.
        SharedSystemClient._identifier_to_system.pop(str(path), None)
        if _is_read_only(error):
            raise ReadOnlyStoreError(
                f"the Chroma database at {path} cannot be written ({error}): {_read_only_fix(path)}"
            ) from error
        raise NotAChromaDatabaseError(
            f"{database} cannot be opened as a Chroma database ({error}): "
            "restore it from a backup, or index into a new directory"
        ) from error
