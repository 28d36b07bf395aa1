"""Indexing files: find them, read `.txt`/`.md`/`.jsonl` into documents, chunk, store, prune.

Every chunk records the file it came from under `FILE_KEY`, a metadata key of the project's
own that a record's fields cannot set, and pruning goes by that key alone: indexing a file
again removes exactly what that file no longer holds, and no run can remove another file's
documents, whatever their `source` metadata says.

    report = index_paths(store, ["docs/", "faq.jsonl"])
    print(report.summary())
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from onegen_integrations.errors import InputFileError
from onegen_integrations.model import OneGenModel
from onegen_integrations.splitter import TextSplitter
from onegen_integrations.store import AddPlan, ChromaDocumentStore, content_id

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIX = ".jsonl"
SUFFIXES = (*TEXT_SUFFIXES, JSONL_SUFFIX)
FILE_KEY = "onegen_file"
"""Metadata key holding the absolute path of the file a chunk was read from."""
RESERVED_PREFIX = "onegen_"
DEMO = files("onegen_integrations").joinpath("demo")
"""The bundled demo: `corpus.jsonl` (fictional people and places) and `conversation.txt`."""
"""Metadata keys with this prefix belong to the project; records may not set them."""


@dataclass(frozen=True)
class SourceDocument:
    """One document read from a file, before splitting; `id` is None for content ids."""

    text: str
    id: str | None
    metadata: dict[str, Any]
    where: str
    """`file` or `file:line`, for messages."""


@dataclass(frozen=True)
class SkippedFile:
    """A file under an indexed directory that was left out, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Chunks:
    """What `ChromaDocumentStore.add` takes, plus where each chunk came from."""

    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run read, wrote and removed."""

    files: int
    documents: int
    added: int
    replaced: int
    unchanged: int
    removed: int
    skipped: list[SkippedFile]
    collection: str
    total: int
    """Documents the collection holds afterwards."""

    def summary(self) -> str:
        """One line for people: counts, then the collection's size."""
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return (
            f"{self.documents} documents from {self.files} files{skipped}: {self.added} added, {self.replaced} "
            f"replaced, {self.unchanged} unchanged, {self.removed} removed; collection {self.collection!r} "
            f"holds {self.total}"
        )


@dataclass(frozen=True)
class Sources:
    """Files found and read into documents (`read_sources`): nothing chunked or stored yet."""

    files: list[Path]
    skipped: list[SkippedFile]
    directories: list[Path]
    """The directories given: files once under them and now gone are pruned."""
    documents: list[SourceDocument]


@dataclass(frozen=True)
class SourceChunks:
    """Files read and chunked, ready for `index_chunks`: nothing is stored yet."""

    files: list[Path]
    skipped: list[SkippedFile]
    directories: list[Path]
    chunks: Chunks


@dataclass(frozen=True)
class IndexPlan:
    """An indexing run checked against the collection, nothing written yet (`plan_index`)."""

    read: SourceChunks
    add: AddPlan
    """The chunks to embed and write (`ChromaDocumentStore.plan_add`)."""
    owners: set[str]
    """The `FILE_KEY` values whose chunks this run replaces: the files read and the files gone."""


def index_paths(
    store: ChromaDocumentStore,
    paths: Sequence[str | Path],
    *,
    chunk_tokens: int = 256,
    overlap_tokens: int = 32,
    batch_size: int = 32,
    follow_symlinks: bool = False,
    show_progress: bool = True,
) -> IndexReport:
    """Index files and directories into `store`; return what changed (`read_sources`,
    `chunk_sources`, then `index_chunks`)."""
    sources = read_sources(paths, follow_symlinks=follow_symlinks)
    chunked = chunk_sources(sources, store.model, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
    return index_chunks(store, chunked, batch_size=batch_size, show_progress=show_progress)


def index_demo(store: ChromaDocumentStore, *, show_progress: bool = False) -> IndexReport:
    """Index the bundled demo corpus into `store`, as `onegen index` would index its file."""
    with as_file(DEMO.joinpath("corpus.jsonl")) as corpus:
        return index_paths(store, [corpus], show_progress=show_progress)


def demo_documents() -> list[SourceDocument]:
    """The bundled demo corpus as `onegen index` reads it: an `id`, the `text`, and a
    `title` in each document's metadata."""
    with as_file(DEMO.joinpath("corpus.jsonl")) as corpus:
        return list(read_documents(corpus))


def demo_conversation() -> list[str]:
    """The user messages of the demo's scripted conversation, in order."""
    return [line for line in DEMO.joinpath("conversation.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


def read_sources(paths: Sequence[str | Path], *, follow_symlinks: bool = False) -> Sources:
    """Find and read every file under `paths`, checking every record; needs no model.

    Raises `InputFileError` naming `file:line` for the first record that cannot be indexed,
    before anything is written anywhere.
    """
    paths = [Path(p) for p in paths]
    files, skipped = find_files(paths, follow_symlinks=follow_symlinks)
    if not files:
        raise InputFileError(f"no .txt, .md or .jsonl files in {', '.join(map(str, paths))}")
    documents = [doc for path in files for doc in read_documents(path)]
    return Sources(files, skipped, [p for p in paths if p.is_dir()], documents)


def chunk_sources(
    sources: Sources, model: OneGenModel, *, chunk_tokens: int = 256, overlap_tokens: int = 32
) -> SourceChunks:
    """Split what `read_sources` read into chunks that fit `model`, with their ids (see
    `chunk_documents`; an id given to two texts raises `InputFileError`)."""
    splitter = TextSplitter(model, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
    chunks = chunk_documents(sources.documents, splitter)
    return SourceChunks(sources.files, sources.skipped, sources.directories, chunks)


def index_chunks(
    store: ChromaDocumentStore, read: SourceChunks, *, batch_size: int = 32, show_progress: bool = True
) -> IndexReport:
    """Store what `chunk_sources` made: embed new and edited chunks, then prune.

    What the files read no longer hold is removed, as is everything from files that were
    under the given directories and are gone. A rerun after an interruption embeds only
    what is missing. (`plan_index`, `store.write_plan` and `finish_index` are its steps, for
    embedding elsewhere, as `ray_indexing` does.)
    """
    plan = plan_index(store, read)
    store.write_plan(plan.add, store.embed_plan(plan.add, batch_size=batch_size), show_progress=show_progress)
    return finish_index(store, plan)


def plan_index(store: ChromaDocumentStore, read: SourceChunks) -> IndexPlan:
    """Check what `chunk_sources` made against the collection: what to embed, and whose chunks
    may be pruned. Raises `InputFileError` for an id the collection holds from another file."""
    chunks = read.chunks
    owners = {file_key(path) for path in read.files} | _gone_files(store, read.directories)
    add = store.plan_add(chunks.texts, chunks.ids, chunks.metadatas)
    _check_owners(chunks, add.stored, owners)
    return IndexPlan(read, add, owners)


def finish_index(store: ChromaDocumentStore, plan: IndexPlan) -> IndexReport:
    """After `plan`'s chunks are written: prune what its files no longer hold; report the run."""
    kept = set(plan.add.texts)
    removed = len(store.prune({FILE_KEY: {"$in": sorted(plan.owners)}}, kept))
    stored = plan.add.stored
    replaced = sum(id_ in stored and stored[id_][0] != text for id_, text in plan.add.texts.items())
    return IndexReport(
        files=len(plan.read.files),
        documents=len(kept),
        added=len(kept) - len(stored),
        replaced=replaced,
        unchanged=len(stored) - replaced,
        removed=removed,
        skipped=plan.read.skipped,
        collection=store.collection_name,
        total=store.count(),
    )


def file_content_id(file: str, text: str) -> str:
    """The id of a chunk without a given id: a content id of its file's key and its text."""
    return content_id(f"{file}\n{text}")


def file_key(path: Path) -> str:
    """The `FILE_KEY` value of a file: its absolute path, symbolic links left as written."""
    return os.path.abspath(path)


def find_files(paths: Sequence[Path], *, follow_symlinks: bool = False) -> tuple[list[Path], list[SkippedFile]]:
    """The files to index, and the files under the directories that were left out.

    A file given by name is read even through a symbolic link. Under a directory, hidden
    files and folders are ignored, and a link is followed only when it stays inside that
    directory, unless `follow_symlinks`; a link leading out of it, a broken link and a
    linked folder are reported as skipped.
    """
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        if path.is_dir():
            walked, left_out = _walk(path, follow_symlinks)
            found += walked
            skipped += left_out
        elif path.is_file():
            if path.suffix not in SUFFIXES:
                raise InputFileError(f"{path}: unsupported file type; give .txt, .md or .jsonl files")
            found.append(path)
        elif path.is_symlink():
            raise InputFileError(f"{path}: a broken symbolic link (its target {os.readlink(path)} does not exist)")
        else:
            raise InputFileError(f"{path}: no such file or directory")
    return found, skipped


def _walk(root: Path, follow_symlinks: bool) -> tuple[list[Path], list[SkippedFile]]:
    """Supported files under `root` in a stable order, and the links left out."""
    real_root = os.path.realpath(root)
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    seen_dirs = {real_root}
    for directory, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        here = Path(directory)
        kept_dirs = []
        for name in sorted(dirnames):
            child = here / name
            if name.startswith("."):
                continue
            if child.is_symlink() and not follow_symlinks:
                skipped.append(SkippedFile(child, "a linked folder; pass --follow-symlinks to index it"))
                continue
            real = os.path.realpath(child)
            if real not in seen_dirs:  # a link loop, or a folder reached twice
                seen_dirs.add(real)
                kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or path.suffix not in SUFFIXES:
                continue
            if path.is_symlink():
                if not path.exists():
                    skipped.append(SkippedFile(path, f"a broken link (to {os.readlink(path)})"))
                    continue
                target = os.path.realpath(path)
                if not follow_symlinks and os.path.commonpath([real_root, target]) != real_root:
                    skipped.append(SkippedFile(path, f"links outside {root} (to {target}); pass --follow-symlinks to index it"))
                    continue
            found.append(path)
    return found, skipped


def read_text_file(path: Path, hint: str) -> str:
    """The UTF-8 text of `path`, or an `InputFileError` naming it and ending with `hint` (what to do)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputFileError(f"{path}: no such file; {hint}") from error
    except UnicodeDecodeError as error:
        raise InputFileError(f"{path}: not UTF-8 text (byte {error.start} cannot be decoded); {hint}") from error
    except OSError as error:
        raise InputFileError(f"{path}: cannot be read ({error.strerror}); {hint}") from error


def read_documents(path: Path) -> Iterator[SourceDocument]:
    """The documents of one file: the whole text of .txt/.md, one per line of .jsonl."""
    content = read_text_file(path, "save it as UTF-8, or leave it out")
    metadata = {"source": str(path), FILE_KEY: file_key(path)}
    if path.suffix != JSONL_SUFFIX:
        if content.strip():
            yield SourceDocument(content, None, metadata, str(path))
        return
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            yield _jsonl_document(f"{path}:{number}", line, metadata)


def _jsonl_document(where: str, line: str, file_metadata: dict[str, Any]) -> SourceDocument:
    """One .jsonl line: `text`, an optional `id`, every other key kept as metadata."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputFileError(f"{where}: not valid JSON ({error.msg}); fix or remove that line") from error
    if not isinstance(record, dict):
        raise InputFileError(f'{where}: expected a JSON object like {{"text": "..."}}')
    text = record.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        raise InputFileError(f'{where}: needs a non-empty string "text"')
    id_ = record.pop("id", None)
    if id_ is not None and (isinstance(id_, bool) or not isinstance(id_, (str, int)) or id_ == ""):
        raise InputFileError(f'{where}: "id" must be a non-empty string or a whole number')
    return SourceDocument(text, None if id_ is None else str(id_), _record_metadata(where, record, file_metadata), where)


def _record_metadata(where: str, record: dict[str, Any], file_metadata: dict[str, Any]) -> dict[str, Any]:
    """A record's other fields as Chroma metadata: scalars kept, lists and objects as JSON text."""
    metadata = dict(file_metadata)
    for key, value in record.items():
        if not key or key.startswith(("#", RESERVED_PREFIX)):
            raise InputFileError(
                f"{where}: field {key!r} cannot be metadata (empty, or a name reserved for the index: "
                f"'#...' or '{RESERVED_PREFIX}...'); rename it"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InputFileError(f"{where}: field {key!r} is {value}; give a finite number, or leave the field out")
        if value is not None:
            metadata[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return metadata


def chunk_documents(documents: Sequence[SourceDocument], splitter: TextSplitter) -> Chunks:
    """Each document as chunks that fit `splitter`, with ids and metadata.

    Chunk `i` of a document with an id gets the id `"{id}#{i}"` (the id alone when the
    document is one chunk). A document without an id gets content ids of its file and text,
    so the same text in two files is two documents, each pruned only with its own file.
    An id given to two different texts is an error naming both places.
    """
    chunks = Chunks()
    first: dict[str, tuple[str, str]] = {}
    for doc in documents:
        pieces = splitter.split(doc.text)
        for i, piece in enumerate(pieces):
            if doc.id is None:
                id_ = file_content_id(doc.metadata.get(FILE_KEY, ""), piece)
            else:
                id_ = doc.id if len(pieces) == 1 else f"{doc.id}#{i}"
            if id_ in first and first[id_][1] != piece:
                raise InputFileError(f"{doc.where}: {_collision(id_, doc, i, len(pieces), first[id_][0])}")
            first.setdefault(id_, (doc.where, piece))
            chunks.texts.append(piece)
            chunks.ids.append(id_)
            chunks.metadatas.append({**doc.metadata, "chunk": i})
            chunks.wheres.append(doc.where)
    return chunks


def _collision(id_: str, doc: SourceDocument, index: int, pieces: int, earlier: str) -> str:
    if pieces > 1:
        return (
            f"chunk {index} of record {doc.id!r} gets the id {id_!r}, which {earlier} already uses for another "
            f"text (a record longer than one chunk gets ids ID#0, ID#1, ...); give one of them another id"
        )
    return f"id {id_!r} is already used by {earlier} for another text: give each record its own id"


def _check_owners(chunks: Chunks, stored: dict[str, tuple[str, dict[str, Any] | None]], owners: set[str]) -> None:
    """Refuse an id the collection holds from a file this run neither reads nor prunes."""
    for id_, where in zip(chunks.ids, chunks.wheres):
        holder = (stored.get(id_, ("", None))[1] or {}).get(FILE_KEY)
        if isinstance(holder, str) and holder not in owners:
            raise InputFileError(
                f"{where}: id {id_!r} is already in the collection from {holder}: ids must be unique across "
                "files; give this record another id, or index both files together"
            )


def _gone_files(store: ChromaDocumentStore, directories: Sequence[Path]) -> set[str]:
    """Files the collection holds chunks of that were under one of `directories` and are gone."""
    roots = tuple(os.path.join(os.path.abspath(path), "") for path in directories)
    if not roots:
        return set()
    return {key for key in store.metadata_values(FILE_KEY) if key.startswith(roots) and not os.path.lexists(key)}
