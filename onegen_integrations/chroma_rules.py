"""What Chroma accepts, checked before anything is written.

Chroma 1.5 checks some rules only while it writes (after earlier batches are stored),
silently drops or rounds some values, and lets a NaN inside a list corrupt a collection's
write log for good. Each of those is refused here, naming the document and what to do.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from chromadb.api.types import SparseVector, validate_metadata

from onegen_integrations.errors import InvalidDocumentError, NotAChromaDatabaseError

CHROMA_MIGRATION_COLUMNS = frozenset({"dir", "version", "filename", "sql", "hash"})
"""The columns of the `migrations` table every Chroma database has (other apps' tables of that name differ)."""
_INT64 = (-(2**63), 2**63 - 1)


def is_utf8(text: str) -> bool:
    """False if `text` holds lone surrogates, which Chroma cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_texts(texts: list[Any]) -> None:
    """Raise `InvalidDocumentError` for a text that is not a str, or not encodable as UTF-8."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidDocumentError(
                f"document {i} is {type(text).__name__}, not a string: pass each document's text as a "
                "str; nothing was written"
            )
        if not is_utf8(text):
            raise InvalidDocumentError(
                f"document {i} is not valid UTF-8 text (it holds a lone surrogate): decode its source with "
                "errors='replace' or remove the character; nothing was written"
            )


def checked_metadata(meta: Any, document: str) -> dict[str, Any] | None:
    """`meta` as Chroma stores it (None values dropped), or `InvalidDocumentError` naming `document`.

    Chroma 1.5 checks some rules only when it writes, after earlier batches are stored, and
    silently drops or rounds some values; each of those is refused here instead.
    """
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise InvalidDocumentError(
            f"{document} has metadata of type {type(meta).__name__}: give a dict with str keys, or None; "
            "nothing was written"
        )
    for key, value in meta.items():
        problem = _key_problem(key) or _value_problem(value)
        if problem:
            raise InvalidDocumentError(f"{document} has metadata {key!r}: {value!r}: {problem}; nothing was written")
    kept = {key: value for key, value in meta.items() if value is not None}
    try:
        validate_metadata(kept or None)  # Chroma's own checks, for what this version adds beyond the above
    except (ValueError, TypeError) as error:
        raise InvalidDocumentError(f"{document} has metadata Chroma refuses ({error}); nothing was written") from error
    return kept or None


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"the key is {type(key).__name__}, not a string: use str keys"
    if not key:
        return "the key is empty, which Chroma refuses: give it a name"
    if key[0] in "#$":
        return f"keys starting with {key[0]!r} are reserved by Chroma: rename the key"
    if key.startswith("chroma:"):
        return "keys starting with 'chroma:' are reserved by Chroma (it drops them): rename the key"
    if not is_utf8(key):
        return "the key is not valid UTF-8 (a lone surrogate): rename the key"
    return None


def _value_problem(value: Any) -> str | None:
    if isinstance(value, list):
        if not value:
            return "Chroma refuses empty lists: leave the key out instead"
        kinds = {type(item) for item in value}
        if len(kinds) > 1 or not kinds <= {str, int, float, bool}:
            return "a list must hold values of one type, all str, int, float or bool"
        return next((f"the list holds a value that {p}" for p in map(_scalar_problem, value) if p), None)
    if isinstance(value, SparseVector):
        finite = all(math.isfinite(v) for v in value.values)
        return None if finite else "the sparse vector holds NaN or infinite values: drop or fix them"
    return _scalar_problem(value)


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        # Chroma stores a lone NaN as no value at all, and a NaN in a list corrupts the collection's write log.
        return "is NaN or infinite, which Chroma cannot store: leave the key out or store it as a string"
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return "is beyond 64-bit integers, which Chroma rounds to a float: store it as a string"
    if isinstance(value, str) and not is_utf8(value):
        return "is not valid UTF-8 text (a lone surrogate): remove the character"
    return None


def check_chroma_sqlite(database: Path) -> None:
    """Raise `NotAChromaDatabaseError` if `database` exists but is not Chroma's (nor an empty) SQLite file.

    Opened read-only, so another program's file is left byte for byte as it was; Chroma
    itself would add its tables to any SQLite database it is pointed at.
    """
    if not database.is_file() or database.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = {row[1] for row in connection.execute("PRAGMA table_info(migrations)")}
    except sqlite3.OperationalError:
        return  # cannot be read now (locked, unreadable): Chroma's own open reports why
    except sqlite3.DatabaseError as error:
        raise NotAChromaDatabaseError(
            f"{database} is not a database ({error}): move it away or give another directory; it was left as it was"
        ) from error
    if tables and not CHROMA_MIGRATION_COLUMNS.issubset(columns):
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise NotAChromaDatabaseError(
            f"{database} is another program's SQLite database (tables {listed}), not Chroma's: give a "
            "directory of its own for the Chroma database; the file was left as it was"
        )
