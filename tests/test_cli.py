"""The `onegen` command: index, ask, chat and demo, driven in-process with a tiny model."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from onegen_integrations.cli import main
from onegen_integrations.ingest import DEMO, FILE_KEY, file_content_id
from onegen_integrations.model import OneGenModel
from onegen_integrations.options import RETRIEVAL_MODES, default, help_text
from onegen_integrations.store import ChromaDocumentStore
from tests.conftest import make_tiny_model

USAGE_LINE = re.compile(
    r"^\[\d+ tokens, \d+ retrievals?, \d+\.\d s, \d+\.\d tokens/s; .*cached (\d+); finish: \w+\]$", re.M
)
RETRIEVAL_LINE = re.compile(r'^\[retrieved: (\S+) \(-?\d\.\d\d\) "[^"]+"\]$', re.M)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """Two text files (one in a subdirectory), a .jsonl with two documents, and a file to ignore."""
    root = tmp_path / "docs"
    (root / "people").mkdir(parents=True)
    (root / "institute.md").write_text("# Varenne Institute\n\nOdile Marchetti founded the Varenne Institute.")
    (root / "people" / "odile.txt").write_text("Odile Marchetti was born in Selbrook.")
    (root / "towns.jsonl").write_text(
        json.dumps({"id": "selbrook", "text": "Selbrook lies on the River Tamsey.", "title": "Selbrook"})
        + "\n\n"
        + json.dumps({"text": "Corvant is a port city.", "tags": ["port", "city"]})
        + "\n"
    )
    (root / "image.png").write_bytes(b"\x89PNG")
    return root


def index(model: OneGenModel, *args: str) -> int:
    return main(["index", *args], model=model)


def test_index_reads_every_supported_file_and_reports_counts(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert index(tiny_model, str(docs), "--db", str(tmp_path / "db"), "--collection", "docs") == 0

    out = capsys.readouterr().out
    assert "4 documents from 3 files: 4 added, 0 replaced, 0 unchanged, 0 removed; collection 'docs' holds 4" in out
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db", collection="docs")
    hit = store.search(tiny_model.embed_documents(["Selbrook lies on the River Tamsey."])[0], k=1)[0]
    assert hit.id == "selbrook"
    towns = str(docs / "towns.jsonl")
    assert hit.metadata == {"title": "Selbrook", "source": towns, FILE_KEY: towns, "chunk": 0}
    corvant = store.search(tiny_model.embed_documents(["Corvant is a port city."])[0], k=1)[0]
    assert (corvant.id, corvant.metadata["tags"]) == (file_content_id(towns, "Corvant is a port city."), '["port", "city"]')


def test_indexing_again_skips_every_document(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    index(tiny_model, str(docs), "--db", str(tmp_path / "db"))
    capsys.readouterr()

    assert index(tiny_model, str(docs), "--db", str(tmp_path / "db")) == 0

    out = capsys.readouterr().out
    assert "4 documents from 3 files: 0 added, 0 replaced, 4 unchanged, 0 removed; collection 'onegen' holds 4" in out


def test_indexing_edited_files_again_replaces_what_they_held(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    index(tiny_model, str(docs), "--db", str(tmp_path / "db"))
    (docs / "people" / "odile.txt").write_text("Odile Marchetti was born in Corvant.")
    (docs / "towns.jsonl").write_text(json.dumps({"id": "selbrook", "text": "Selbrook lies on the River Wend."}))
    capsys.readouterr()

    assert index(tiny_model, str(docs / "people"), str(docs / "towns.jsonl"), "--db", str(tmp_path / "db")) == 0

    out = capsys.readouterr().out
    assert "2 documents from 2 files: 1 added, 1 replaced, 0 unchanged, 2 removed; collection 'onegen' holds 3" in out
    held = ChromaDocumentStore(tiny_model, path=tmp_path / "db").collection.get(include=["documents"])
    assert sorted(held["documents"]) == [
        "# Varenne Institute\n\nOdile Marchetti founded the Varenne Institute.",  # not indexed again: kept
        "Odile Marchetti was born in Corvant.",
        "Selbrook lies on the River Wend.",
    ]


def test_files_deleted_from_an_indexed_directory_leave_the_collection(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.txt"
    other.write_text("Corvant has a lighthouse.")
    index(tiny_model, str(docs), str(other), "--db", str(tmp_path / "db"))
    (docs / "people" / "odile.txt").unlink()
    (docs / "towns.jsonl").unlink()
    other.unlink()  # not under a directory indexed again: kept
    capsys.readouterr()

    assert index(tiny_model, str(docs), "--db", str(tmp_path / "db")) == 0

    assert "1 documents from 1 files: 0 added, 0 replaced, 1 unchanged, 3 removed; collection 'onegen' holds 2" in (
        capsys.readouterr().out
    )
    held = ChromaDocumentStore(tiny_model, path=tmp_path / "db").collection.get(include=["metadatas"])
    assert sorted(m["source"] for m in held["metadatas"]) == sorted([str(docs / "institute.md"), str(other)])


def test_a_long_file_is_indexed_as_numbered_chunks(tmp_path: Path, tiny_model: OneGenModel) -> None:
    long_file = tmp_path / "long.txt"
    long_file.write_text(" ".join(f"Fact number {i} is about the river." for i in range(40)))

    index(tiny_model, str(long_file), "--db", str(tmp_path / "db"), "--chunk-tokens", "32", "--overlap", "8")

    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db")
    chunks = store.collection.get(include=["metadatas", "documents"])
    assert sorted(m["chunk"] for m in chunks["metadatas"]) == list(range(store.count()))
    assert store.count() > 10
    assert max(tiny_model.count_tokens(text) for text in chunks["documents"]) <= 32


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"title": "no text"}', 'needs a non-empty string "text"'),
        ("[1, 2]", "JSON object"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_file_and_line(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str], line: str, reason: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n\n' + line + "\n")

    assert index(tiny_model, str(bad), "--db", str(tmp_path / "db")) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"onegen: error: {bad}:3: ") and reason in err
    assert "Traceback" not in err
    assert not (tmp_path / "db").exists()


def test_a_directory_without_documents_is_an_error(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()

    assert index(tiny_model, str(tmp_path / "empty"), "--db", str(tmp_path / "db")) == 2

    assert capsys.readouterr().err == f"onegen: error: no .txt, .md or .jsonl files in {tmp_path / 'empty'}\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--overlap", "300"], "--overlap must be"),
        (["--port", "8000"], "--port needs --host"),
        (["--workers", "4"], "--workers, --gpus-per-worker and --cpus-per-worker need --ray"),
        (["--ray", "--workers", "0"], "--workers must be an integer, at least 1, not 0"),
        (["--ray=auto", "--gpus-per-worker", "-1"], "--gpus-per-worker must be a number, at least 0, not -1.0"),
    ],
)
def test_impossible_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["index", str(tmp_path), *options])

    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_model_path_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "hello?", "--model", str(tmp_path / "nowhere"), "--retrieval", "never"]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"onegen: error: no model at {str(tmp_path / 'nowhere')!r}: ")
    assert err.count("\n") == 1 and "nothing is downloaded" in err


def test_asking_without_a_database_says_to_index_first(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "hello?", "--db", str(tmp_path / "db")], model=tiny_model) == 2

    assert "index documents first (onegen index" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_ask_streams_the_answer_with_retrievals_and_usage(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    index(tiny_model, str(docs), "--db", str(tmp_path / "db"))
    capsys.readouterr()

    argv = ["ask", "Where is Selbrook?", "--db", str(tmp_path / "db"), "--k", "2", "--max-new-tokens", "4"]
    code = main(argv, model=tiny_model)

    err = capsys.readouterr().err
    assert code == 0
    store = ChromaDocumentStore(tiny_model, path=tmp_path / "db")
    all_ids = set(store.collection.get(include=[])["ids"])
    retrieved = RETRIEVAL_LINE.findall(err)
    assert len(retrieved) == 2 and set(retrieved) <= all_ids
    assert len(USAGE_LINE.findall(err)) == 1


def test_scripted_chat_echoes_messages_and_obeys_reset_and_quit(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    index(tiny_model, str(docs), "--db", str(tmp_path / "db"))
    script = tmp_path / "script.txt"
    script.write_text("first question\n\nsecond question\n/reset\nthird question\n/quit\nnever sent\n")
    capsys.readouterr()

    argv = ["chat", "--db", str(tmp_path / "db"), "--script", str(script), "--max-new-tokens", "3"]
    code = main(argv, model=tiny_model)

    out, err = capsys.readouterr()
    assert code == 0
    echoed = re.findall(r"^you> (.*)$", out, re.M)
    assert echoed == ["first question", "second question", "/reset", "third question", "/quit"]
    cached = [int(n) for n in USAGE_LINE.findall(err)]
    assert cached[0] == 0 and cached[1] > 0 and cached[2] == 0
    assert "[conversation reset]" in err


def test_chat_reads_piped_stdin_without_prompting(
    docs: Path,
    tmp_path: Path,
    tiny_model: OneGenModel,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index(tiny_model, str(docs), "--db", str(tmp_path / "db"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello there\nand again\n"))
    capsys.readouterr()

    argv = ["chat", "--db", str(tmp_path / "db"), "--retrieval", "never", "--max-new-tokens", "2"]
    assert main(argv, model=tiny_model) == 0

    out, err = capsys.readouterr()
    assert re.findall(r"^you> (.*)$", out, re.M) == ["hello there", "and again"]
    assert len(USAGE_LINE.findall(err)) == 2 and "[retrieved" not in err


def test_demo_indexes_the_bundled_corpus_and_runs_its_conversation(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = DEMO
    corpus_size = len([line for line in demo.joinpath("corpus.jsonl").read_text().splitlines() if line.strip()])
    messages = [line.strip() for line in demo.joinpath("conversation.txt").read_text().splitlines() if line.strip()]

    assert main(["demo", "--db", str(tmp_path / "demo-db"), "--max-new-tokens", "2"], model=tiny_model) == 0

    out, err = capsys.readouterr()
    assert f"demo corpus: {corpus_size} documents" in out
    assert re.findall(r"^you> (.*)$", out, re.M) == messages
    assert len(RETRIEVAL_LINE.findall(err)) == len(messages)
    # A new default model (another fingerprint) runs the demo on the same database.
    assert main(["demo", "--db", str(tmp_path / "demo-db"), "--max-new-tokens", "2"], model=make_tiny_model(seed=1)) == 0
    assert f"demo corpus: {corpus_size} documents" in capsys.readouterr().out


@pytest.mark.default_model
def test_onegen_ask_end_to_end_on_the_default_model(tmp_path: Path) -> None:
    onegen = Path(sys.executable).parent / "onegen"
    (tmp_path / "facts.jsonl").write_text(
        json.dumps({"id": "selbrook", "text": "Selbrook is a town on the River Tamsey."})
        + "\n"
        + json.dumps({"id": "corvant", "text": "Corvant is a port city on the Bay of Sarn."})
        + "\n"
    )
    db = str(tmp_path / "db")
    indexed = subprocess.run(
        [onegen, "index", str(tmp_path / "facts.jsonl"), "--db", db], capture_output=True, text=True, timeout=300
    )
    assert indexed.returncode == 0, indexed.stderr
    assert "2 documents from 1 files: 2 added" in indexed.stdout

    asked = subprocess.run(
        [onegen, "ask", "Which river runs through Selbrook?", "--db", db, "--max-new-tokens", "24"],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert asked.returncode == 0, asked.stderr
    assert "untrained" not in asked.stderr
    assert RETRIEVAL_LINE.findall(asked.stderr) == ["selbrook"]
    assert "Tamsey" in asked.stdout
    assert len(USAGE_LINE.findall(asked.stderr)) == 1
    assert asked.stdout.strip()


def test_train_hands_over_to_the_training_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / "train.jsonl"
    records.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}\n')
    corpus = DEMO.joinpath("corpus.jsonl")
    assert main(["train", "validate", str(corpus), str(records)]) == 0
    assert "1 valid record" in capsys.readouterr().out


def test_export_gguf_writes_a_model_the_llama_cpp_backend_loads_and_refuses_to_overwrite(
    tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llama_cpp")
    out = tmp_path / "tiny.q8_0.gguf"
    assert main(["export-gguf", "tiny", "--out", str(out), "--type", "q8_0"], model=tiny_model) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    loaded = OneGenModel.load(out)  # auto: a .gguf file runs on llama.cpp
    assert loaded.backend.name == "llama.cpp" and loaded.fingerprint == tiny_model.fingerprint
    assert main(["export-gguf", "tiny", "--out", str(out)], model=tiny_model) == 2
    assert "already exists" in capsys.readouterr().err


def test_ask_runs_on_a_gguf_given_as_the_model(
    docs: Path, tmp_path: Path, tiny_model: OneGenModel, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llama_cpp")
    gguf = tiny_model.export_gguf(tmp_path / "tiny.gguf")
    db = str(tmp_path / "db")
    assert index(tiny_model, str(docs), "--db", db) == 0  # indexed on torch, asked on llama.cpp
    capsys.readouterr()
    args = ["ask", "Who founded the institute?", "--db", db, "--model", str(gguf), "--retrieval", "always"]
    assert main([*args, "--max-new-tokens", "3"]) == 0
    assert RETRIEVAL_LINE.search(capsys.readouterr().err)


def test_train_and_eval_hand_leading_options_to_their_own_parsers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        main(["train", "--help"])
    assert help_exit.value.code == 0 and "--config CONFIG" in capsys.readouterr().out
    assert main(["eval", "--systems", "onegen,nonsense", "--data", "nowhere"]) == 2
    assert "unknown eval systems nonsense: choose from onegen," in capsys.readouterr().err


def test_generation_flags_show_the_engines_defaults_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps help to the terminal's width
    for name in ("k", "max_new_tokens"):
        assert f"{help_text(name)} (default {default(name)})" in shown
    assert f"--retrieval {{{','.join(RETRIEVAL_MODES)}}} {help_text('retrieval')}" in shown


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--k", "0"], "--k must be at least 1, not 0"),
        (["--max-new-tokens", "-3"], "--max-new-tokens must be at least 1, not -3"),
    ],
)
def test_generation_options_out_of_range_are_usage_errors_named_by_flag(
    capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["ask", "hello?", *options])

    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_serve_refuses_a_taken_port_before_loading_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", "/nowhere"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--concurrency", "--queue", "--max-conversations", "--max-cached-tokens", "--max-tokens"])
def test_serve_limits_must_be_positive(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", flag, "0"])
    assert exit_.value.code == 2 and f"{flag} must be at least 1" in capsys.readouterr().err
