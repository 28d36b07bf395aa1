"""The training data format: `docs.jsonl` and `train.jsonl`, with a validator.

`docs.jsonl`, one document a line:
    {"id": "Beyoncé#0", "text": "Beyoncé Giselle Knowles-Carter ...", "title": "Beyoncé"}

`train.jsonl`, one dialogue a line. An assistant message holds one `[RQ]` marker per retrieval
and, in the same order, one entry of `retrievals` naming its positive documents (inserted after
the marker as passages) and optional hard negatives:
    {"id": "q1", "group": "Beyoncé", "messages": [
        {"role": "user", "content": "When did Beyonce start becoming popular?"},
        {"role": "assistant", "content": "[RQ] in the late 1990s",
         "retrievals": [{"positives": ["Beyoncé#0"], "negatives": ["Beyoncé#3"]}]}]}

`group` (optional) names the unit a split keeps whole (a SQuAD article). Other keys, on a
record or a message (such as a follow-up's unedited `original` question), are kept and ignored.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onegen_integrations.config import OneGenTokens
from onegen_integrations.tools import ToolFormatError, ToolSpec


class DataFormatError(ValueError):
    """A data file breaks the format; the message lists `file:line: reason` per problem."""


class Retrieval(BaseModel):
    """What one `[RQ]` marker retrieves: positives are inserted, negatives are pushed away."""

    model_config = ConfigDict(extra="allow")

    positives: list[str]
    """Ids of the documents this retrieval should find (inserted after the marker, in order)."""
    negatives: list[str] = Field(default_factory=list)
    """Ids of hard negatives (in-batch negatives are used as well)."""


class Message(BaseModel):
    """One chat message; assistant messages may carry retrievals."""

    model_config = ConfigDict(extra="allow")

    role: str
    """`user` or `assistant`."""
    content: str
    """The text; in assistant messages, `[RQ]` marks each retrieval."""
    retrievals: list[Retrieval] = Field(default_factory=list)
    """One entry per `[RQ]` in `content`, in order."""


class Record(BaseModel):
    """One training dialogue."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    """Optional identifier, for logs."""
    group: str | None = None
    """What a train/held-out split keeps whole (for SQuAD: the article)."""
    messages: list[Message]
    """Alternating user and assistant messages, starting with a user message."""
    tools: list[dict[str, Any]] = Field(default_factory=list)
    """Tools offered in the system prompt, as OpenAI function schemas (`tools.ToolSpec.from_openai`);
    calls and results are plain message text in the format of `onegen_integrations.tools`."""


@dataclass(frozen=True)
class UnreadableLine:
    """A line of a JSONL file that is not UTF-8 JSON; `reason` says why and what to do."""

    reason: str


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield `(line number, value)` for every non-blank line of a JSONL file; a line that is
    not UTF-8 JSON yields an `UnreadableLine` as the value, so callers can report every line."""
    offset = 0
    with open(path, "rb") as handle:  # bytes, so that one badly encoded line cannot hide the rest
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            if number == 1 and raw.startswith(codecs.BOM_UTF8):  # Windows editors add one; it is not data
                raw, start = raw[len(codecs.BOM_UTF8) :], start + len(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.end]
                yield number, UnreadableLine(
                    f"not valid UTF-8 (byte {bad!r} at byte offset {start + error.start} of the file): "
                    "re-save the file as UTF-8"
                )
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, UnreadableLine(f"not valid JSON ({error.msg} at column {error.colno})")
            except (ValueError, RecursionError) as error:  # over-long integers, absurd nesting
                yield number, UnreadableLine(f"not valid JSON ({error})")


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows (models or dicts) as JSONL, creating folders; return how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            data = row.model_dump(exclude_defaults=True) if isinstance(row, BaseModel) else row
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def load_documents(path: str | Path) -> dict[str, str]:
    """Read `docs.jsonl` into `{id: text}`; raise `DataFormatError` listing every bad line
    (not JSON, missing or non-string fields, duplicate ids) or naming an empty file."""
    docs: dict[str, str] = {}
    problems, lines = [], 0
    for number, row in read_jsonl(path):
        lines += 1
        if isinstance(row, UnreadableLine):
            problems.append(f"{path}:{number}: {row.reason}")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path}:{number}: a document must be a JSON object, not {_kind(row)}")
            continue
        doc_id, text = row.get("id"), row.get("text")
        if not isinstance(doc_id, str) or not doc_id:
            problems.append(f"{path}:{number}: 'id' must be a non-empty string, not {_kind(doc_id)}")
        elif not isinstance(text, str) or not text.strip():
            problems.append(f"{path}:{number}: document {doc_id!r} has no 'text' (a non-empty string)")
        elif doc_id in docs:
            problems.append(f"{path}:{number}: duplicate document id {doc_id!r}")
        else:
            docs[doc_id] = text
    if not lines:
        raise _empty(path, 'one document a line: {"id": "doc-1", "text": "..."}')
    _raise_if(problems)
    return docs


def load_records(path: str | Path, docs: dict[str, str], tokens: OneGenTokens | None = None) -> list[Record]:
    """Read and validate `train.jsonl`; raise `DataFormatError` listing every bad line or naming
    an empty file."""
    tokens = tokens or OneGenTokens()
    records, problems, lines = [], [], 0
    for number, row in read_jsonl(path):
        lines += 1
        reasons = record_problems(row, docs, tokens)
        if not reasons:
            try:
                records.append(Record.model_validate(row))
            except ValidationError as error:  # a backstop: record_problems checks every field it knows
                reasons = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        problems += [f"{path}:{number}: {reason}" for reason in reasons]
    if not lines:
        raise _empty(path, "one dialogue a line, as the format in training/README.md says")
    _raise_if(problems)
    return records


def record_problems(row: Any, docs: dict[str, str], tokens: OneGenTokens) -> list[str]:
    """Every reason `row` is not a valid record (empty when it is valid)."""
    if isinstance(row, UnreadableLine):
        return [row.reason]
    if not isinstance(row, dict):
        return [f"a record must be a JSON object, not {_kind(row)}"]
    problems = []
    if not isinstance(row.get("id", ""), str):
        problems.append(f"'id' must be a string, not {_kind(row['id'])}")
    if not isinstance(row.get("group"), (str, type(None))):
        problems.append(f"'group' must be a string, not {_kind(row['group'])}")
    problems += _tool_problems(row.get("tools", []))
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "a record needs a non-empty 'messages' list"]
    reserved = [t for t in tokens.all() if t != tokens.query]
    for index, message in enumerate(messages):
        where = f"message {index}"
        expected = "user" if index % 2 == 0 else "assistant"
        if not isinstance(message, dict):
            problems.append(f"{where}: a message must be a JSON object, not {_kind(message)}")
            continue
        if not isinstance(message.get("content"), str):
            problems.append(f"{where}: needs 'role' and a string 'content'")
            continue
        if message.get("role") != expected:
            problems.append(f"{where}: role must be {expected!r} (user and assistant alternate, user first)")
        content = message["content"]
        problems += [f"{where}: contains the reserved token {t!r}" for t in reserved if t in content]
        retrievals = message.get("retrievals", [])
        markers = content.count(tokens.query)
        if expected == "user":
            if markers or retrievals != []:
                problems.append(f"{where}: user messages cannot hold {tokens.query} or retrievals")
            continue
        if not isinstance(retrievals, list) or len(retrievals) != markers:
            count = len(retrievals) if isinstance(retrievals, list) else "no list of"
            problems.append(f"{where}: {markers} {tokens.query} marker(s) but {count} retrievals")
            continue
        for number, retrieval in enumerate(retrievals):
            problems += [f"{where}, retrieval {number}: {p}" for p in _retrieval_problems(retrieval, docs)]
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        problems.append("the last message must be the assistant's")
    return problems


def _tool_problems(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        return [f"'tools' must be a list of function schemas, not {_kind(tools)}"]
    problems = []
    for number, tool in enumerate(tools):
        try:
            ToolSpec.from_openai(tool if isinstance(tool, dict) else {})
        except ToolFormatError as error:
            problems.append(f"tool {number}: {error}")
    return problems


def _retrieval_problems(retrieval: Any, docs: dict[str, str]) -> list[str]:
    if not isinstance(retrieval, dict) or not isinstance(retrieval.get("positives"), list):
        return ["needs a 'positives' list of document ids"]
    positives, negatives = retrieval["positives"], retrieval.get("negatives", [])
    if not positives:
        return ["'positives' is empty: each retrieval needs at least one document"]
    if not isinstance(negatives, list):
        return ["'negatives' must be a list of document ids"]
    # ids are hashed below (`in docs`, set()): anything but a string would end in a TypeError
    problems = [
        f"'{key}' item {i} must be a document id (a string), not {_kind(d)}"
        for key, ids in (("positives", positives), ("negatives", negatives))
        for i, d in enumerate(ids)
        if not isinstance(d, str)
    ]
    if problems:
        return problems
    problems = [f"unknown document id {d!r} (not in docs.jsonl)" for d in positives + negatives if d not in docs]
    problems += [f"{d!r} is both a positive and a negative" for d in sorted(set(positives) & set(negatives))]
    return problems


def _kind(value: Any) -> str:
    """How a JSON value reads in an error message: `a number (5)`, `a list`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _empty(path: str | Path, expected: str) -> DataFormatError:
    return DataFormatError(f"{path} holds no records: the file is empty or only blank lines; write {expected}")


def _raise_if(problems: list[str], shown: int = 20) -> None:
    if problems:
        more = f"\n... and {len(problems) - shown} more" if len(problems) > shown else ""
        raise DataFormatError(
            f"{len(problems)} problem(s) in the training data:\n" + "\n".join(problems[:shown]) + more
        )
