"""The `onegen` command: index documents into Chroma, then ask or chat with retrieval in one pass.

    onegen index docs/ notes.jsonl --db .onegen/chroma
    onegen index docs/ --ray auto --workers 4 --gpus-per-worker 1 --host chroma.internal --port 8000
    onegen ask "Who founded the Varenne Institute?"
    onegen chat --script questions.txt
    onegen demo
    onegen serve --db .onegen/chroma --port 8000
    onegen eval --model default --data data/eval
    onegen export-gguf default --out smollm2-onegen.gguf
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onegen_integrations.backends.selection import BACKENDS, GGUF_TYPES, BackendName
from onegen_integrations.errors import EmptyStoreError, ExtraNotInstalledError, InvalidOptionError, OneGenError
from onegen_integrations.events import DoneEvent, RetrievalEvent, TokenEvent
from onegen_integrations.locations import DEFAULT_COLLECTION, DEFAULT_PATH, SQLITE_FILE
from onegen_integrations.options import RETRIEVAL_MODES, GenerationOptions, default, help_text, option_names
from onegen_integrations.server.settings import API_KEY_VARIABLE, ServerSettings

if TYPE_CHECKING:
    from onegen_integrations.model import OneGenModel
    from onegen_integrations.ray_indexing import RayOptions
    from onegen_integrations.session import OneGenSession
    from onegen_integrations.store import ChromaDocumentStore

DEMO_DB = ".onegen/demo-db"
DEMO_COLLECTION = "demo"
PREVIEW_CHARS = 60
SCRIPT_HINT = "a script is a UTF-8 text file with one message per line"
SERVER_LIMITS = {
    "concurrency": "requests answered at once",
    "queue": "requests that may wait for a slot; more get 503",
    "max_conversations": "conversations whose KV caches are kept between requests",
    "max_cached_tokens": "tokens all kept caches may hold together",
    "max_tokens": "the highest max_tokens a request may ask for",
    "max_messages": "most messages in one request",
    "max_request_bytes": "largest request body",
}
"""`onegen serve` limits: `ServerSettings` fields, each an option of the same name (`--max-tokens`)."""
RAY_FLAGS = ("workers", "gpus_per_worker", "cpus_per_worker")
"""`onegen index` options that only --ray uses (`RayOptions` fields)."""


def main(argv: Sequence[str] | None = None, *, model: OneGenModel | None = None) -> int:
    """Run the `onegen` command; return its exit status (2 for errors, with one clear line).

    `model` replaces loading `--model` (to drive the CLI in-process with a model already
    loaded, as tests and notebooks do).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in HANDOVERS:
        # Read by the tool's own parser: argparse's REMAINDER would not take a leading option.
        run, args = HANDOVERS[argv[0]], argparse.Namespace(arguments=argv[1:])
    else:
        parser = _parser()
        args = parser.parse_args(argv)
        _check_numbers(parser, args)
        run = args.run
    try:
        return run(args, model)
    except OneGenError as error:
        print(f"onegen: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onegen", description="One LLM that generates and retrieves in a single pass."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="embed .txt, .md and .jsonl files into a collection")
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, or directories to walk")
    _add_store_options(index, DEFAULT_PATH, DEFAULT_COLLECTION)
    index.add_argument("--chunk-tokens", type=int, default=256, help="longer documents are split (default 256)")
    index.add_argument("--overlap", type=int, default=32, help="tokens repeated between chunks (default 32)")
    index.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="documents embedded at once (default 32); with --ray, a batch holds up to the tokens of this many "
        "full-length chunks",
    )
    index.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="under a directory, also index links that lead out of it (by default they are skipped and named)",
    )
    index.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="embed on Ray workers: 'auto' for the cluster `ray start` made, an address (ray://HOST:10001), or "
        "nothing for a local Ray started for the run; this process reads, chunks and writes (docs/distributed.md)",
    )
    index.add_argument("--workers", type=int, help="with --ray: workers embedding at once, each loading the model once (default 2)")
    index.add_argument("--gpus-per-worker", type=float, help="with --ray: GPUs per worker, e.g. 1, or 0.5 for two per GPU (default 0)")
    index.add_argument("--cpus-per-worker", type=float, help="with --ray: CPUs (and threads) per worker (default 1)")
    index.set_defaults(run=_index)

    ask = commands.add_parser("ask", help="answer one question, streaming")
    ask.add_argument("question")
    _add_store_options(ask, DEFAULT_PATH, DEFAULT_COLLECTION)
    _add_generation_options(ask)
    ask.set_defaults(run=_ask)

    chat = commands.add_parser("chat", help="a multi-turn conversation (/reset, /quit)")
    _add_store_options(chat, DEFAULT_PATH, DEFAULT_COLLECTION)
    _add_generation_options(chat)
    chat.add_argument("--script", type=Path, help="one user message per line, run without prompting")
    chat.set_defaults(run=_chat)

    demo = commands.add_parser("demo", help="index the bundled demo corpus and run a scripted chat")
    demo.add_argument("--db", default=DEMO_DB, help=f"database directory (default {DEMO_DB})")
    _add_backend_option(demo)
    _add_generation_options(demo)
    demo.set_defaults(run=_demo)

    evaluate = commands.add_parser(
        "eval",
        help="Recall@1/@5 and answer EM/F1 on held-out SQuAD: OneGen vs a MiniLM pipeline vs the base "
        "(onegen eval --help)",
        add_help=False,
    )
    evaluate.add_argument("arguments", nargs=argparse.REMAINDER, help="passed to the evaluation harness")
    evaluate.set_defaults(run=_eval)

    export = commands.add_parser("export-gguf", help="write a OneGen model as one GGUF file for the llama.cpp backend")
    export.add_argument("model", help="'default', 'default-base' or a OneGen model directory")
    export.add_argument("--out", type=Path, required=True, help="the GGUF file to write (must not exist)")
    export.add_argument("--type", dest="gguf_type", choices=GGUF_TYPES, default="f16",
                        help="weight type (default f16). bf16 reads text faster on CPUs with bf16 arithmetic; "
                             "q8_0 is half the size and decodes faster but retrieves a little worse (docs/backends.md)")
    export.set_defaults(run=_export_gguf)

    serve = commands.add_parser(
        "serve", help="an OpenAI-compatible chat server with a web chat page (docs/server.md)"
    )
    serve.add_argument("--db", default=DEFAULT_PATH, help=f"embedded Chroma database directory (default {DEFAULT_PATH})")
    serve.add_argument("--collection", default=DEFAULT_COLLECTION, help=f"collection name (default {DEFAULT_COLLECTION})")
    serve.add_argument("--model", default="default", help="'default', a model directory or a .gguf file (default: default)")
    serve.add_argument("--served-model-name", help="the name clients send as `model` (default: the --model file or directory name)")
    serve.add_argument("--chroma-host", dest="host", help="use the Chroma server on this host instead of --db")
    serve.add_argument("--chroma-port", dest="port", type=int, help="port of the Chroma server (default 8000)")
    _add_backend_option(serve)
    serve.add_argument("--host", dest="listen_host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", dest="listen_port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--api-key", help=f"require `Authorization: Bearer KEY` on /v1 (default: ${API_KEY_VARIABLE}, else none)")
    for setting, about in SERVER_LIMITS.items():
        value = getattr(ServerSettings, setting)
        serve.add_argument(f"--{setting.replace('_', '-')}", type=int, default=value, help=f"{about} (default {value})")
    _add_generation_options(serve)
    serve.set_defaults(run=_serve)

    train = commands.add_parser(
        "train",
        help="train a OneGen model: onegen train --config CONFIG.yaml (also convert, validate, bench)",
        add_help=False,
    )
    train.add_argument("arguments", nargs=argparse.REMAINDER, help="passed to python -m onegen_training")
    train.set_defaults(run=_train)
    return parser


def _check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse impossible option values the way argparse refuses unknown ones (usage, exit 2)."""
    if getattr(args, "port", None) is not None and args.host is None:
        serving = args.command == "serve"
        parser.error(f"--{'chroma-' * serving}port needs --{'chroma-' * serving}host (the Chroma server's address)")
    try:  # the generation options of ask, chat and demo
        GenerationOptions(**_generation_options(args))
    except InvalidOptionError as error:
        parser.error(str(error.renamed(f"--{error.option.replace('_', '-')}")))
    for name in ("chunk_tokens", "batch_size", "listen_port", *SERVER_LIMITS):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if hasattr(args, "overlap") and not 0 <= args.overlap < args.chunk_tokens:
        parser.error("--overlap must be at least 0 and less than --chunk-tokens")
    if hasattr(args, "ray"):
        if args.ray is None and any(getattr(args, name) is not None for name in RAY_FLAGS):
            parser.error("--workers, --gpus-per-worker and --cpus-per-worker need --ray")
        try:
            _ray_options(args)
        except InvalidOptionError as error:
            parser.error(str(error.renamed(f"--{error.option.replace('_', '-')}")))


def _add_store_options(parser: argparse.ArgumentParser, db: str, collection: str) -> None:
    parser.add_argument("--db", default=db, help=f"embedded Chroma database directory (default {db})")
    parser.add_argument("--collection", default=collection, help=f"collection name (default {collection})")
    parser.add_argument("--model", default="default", help="'default', a model directory or a .gguf file (default: default)")
    parser.add_argument("--host", help="use the Chroma server on this host instead of --db")
    parser.add_argument("--port", type=int, help="port of the Chroma server (default 8000)")
    _add_backend_option(parser)


def _add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: llama.cpp for the default and .gguf files when it is installed and there is no GPU, "
        "else torch (default auto)",
    )


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    """--k, --retrieval and --max-new-tokens, with the defaults and help of `GenerationOptions`."""
    parser.add_argument("--k", type=int, default=default("k"), help=f"{help_text('k')} (default {default('k')})")
    parser.add_argument(
        "--retrieval",
        choices=RETRIEVAL_MODES,
        help=f"{help_text('retrieval')} (default: auto for trained models, always for untrained ones)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=default("max_new_tokens"),
        help=f"{help_text('max_new_tokens')} (default {default('max_new_tokens')})",
    )


def _generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `GenerationOptions` the command line gave; `--retrieval` is left out when not given,
    so the session picks auto or always from the model."""
    return {name: getattr(args, name) for name in option_names() if getattr(args, name, None) is not None}


def _index(args: argparse.Namespace, model: OneGenModel | None) -> int:
    from onegen_integrations.ingest import chunk_sources, index_chunks, read_sources

    ray = _ray_options(args)
    if ray is not None:
        from onegen_integrations.ray_indexing import index_chunks_on_ray, require_ray

        require_ray()
    # Files are read and checked before the model loads: a bad path or record is reported at once.
    sources = read_sources(args.paths, follow_symlinks=args.follow_symlinks)
    model = model or load_model(args.model, args.backend)
    chunked = chunk_sources(sources, model, chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap)
    store = _open_store(args, model)
    if ray is None:
        report = index_chunks(store, chunked, batch_size=args.batch_size)
    else:
        report = index_chunks_on_ray(store, chunked, ray)
    for skipped in report.skipped:
        print(f"onegen: skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    print(report.summary())
    return 0


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray workers `onegen index` asked for, or None without --ray.

    The workers load the model this process indexes with, on --backend; a batch holds the
    tokens of --batch-size full-length chunks.
    """
    if args.ray is None:
        return None
    from onegen_integrations.ray_indexing import RayOptions

    given = {name: getattr(args, name) for name in RAY_FLAGS if getattr(args, name) is not None}
    return RayOptions(address=args.ray, batch_tokens=args.batch_size * args.chunk_tokens, backend=args.backend, **given)


def _ask(args: argparse.Namespace, model: OneGenModel | None) -> int:
    model = model or load_model(args.model, args.backend)
    session = _session(model, _chat_store(args, model), args)
    _stream_turn(session, args.question)
    return 0


def _chat(args: argparse.Namespace, model: OneGenModel | None) -> int:
    from onegen_integrations.ingest import read_text_file

    script = None if args.script is None else read_text_file(args.script, SCRIPT_HINT).splitlines()
    model = model or load_model(args.model, args.backend)
    session = _session(model, _chat_store(args, model), args)
    if script is not None:
        _scripted_chat(session, script)
    elif sys.stdin.isatty():
        _interactive_chat(session)
    else:
        _scripted_chat(session, sys.stdin)
    return 0


def _train(args: argparse.Namespace, model: OneGenModel | None) -> int:
    """Hand over to `onegen_training` (imported only here: the runtime never needs its packages)."""
    try:
        from onegen_training.cli import main as training_main
    except ImportError as error:
        raise OneGenError(
            f"training needs its extra ({error.name} is missing): pip install 'onegen-integrations[train]'"
        ) from error
    return training_main(args.arguments or ["--help"])


def _eval(args: argparse.Namespace, model: OneGenModel | None) -> int:
    """Hand over to the evaluation harness (`onegen_evaluation`, beside the runtime)."""
    from onegen_evaluation.cli import main as evaluation_main

    return evaluation_main(args.arguments, model=model)


HANDOVERS = {"train": _train, "eval": _eval}
"""Commands whose arguments another tool's parser reads."""


def _demo(args: argparse.Namespace, model: OneGenModel | None) -> int:
    from onegen_integrations.ingest import demo_conversation, index_demo
    from onegen_integrations.store import ChromaDocumentStore

    model = model or load_model("default", args.backend)
    # One collection per model: a demo database left by an earlier default model stays valid.
    collection = f"{DEMO_COLLECTION}-{model.fingerprint}"
    store = ChromaDocumentStore(model, path=args.db, collection=collection)
    index_demo(store)
    print(f"demo corpus: {store.count()} documents in {args.db} (collection {collection!r})")
    _scripted_chat(_session(model, store, args), demo_conversation())
    return 0


def _serve(args: argparse.Namespace, model: OneGenModel | None) -> int:
    try:
        import uvicorn

        from onegen_integrations.server import create_app
    except ImportError as error:
        raise ExtraNotInstalledError(
            f"onegen serve needs FastAPI and uvicorn ({error.name} is missing): pip install 'onegen-integrations[serve]'"
        ) from error
    _check_listening(args.listen_host, args.listen_port)  # before a minute of loading, not after
    limits = {setting: getattr(args, setting) for setting in SERVER_LIMITS}
    settings = ServerSettings(
        model_id=args.served_model_name or Path(args.model).stem,
        api_key=args.api_key or os.environ.get(API_KEY_VARIABLE) or None,
        generation=_generation_options(args),
        **limits,
    )
    # On llama.cpp the conversations share one KV buffer: size it to the server's limits.
    cache = {"sequences": settings.max_conversations, "cache_tokens": settings.max_cached_tokens}
    model = model or load_model(args.model, args.backend, **cache)
    store = _chat_store(args, model)
    where = f"http://{args.listen_host}:{args.listen_port}"
    print(f"serving {settings.model_id!r} on {where}: chat page at {where}/, OpenAI API at {where}/v1"
          f"{' (API key required)' if settings.api_key else ''}", flush=True)
    uvicorn.run(create_app(model, store, settings), host=args.listen_host, port=args.listen_port, log_level="warning")
    return 0


def _check_listening(host: str, port: int) -> None:
    """`OneGenError` when nothing can listen on host:port (taken, or not an address of this host)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind((host, port))
    except OSError as error:
        raise OneGenError(f"cannot listen on {host}:{port} ({error.strerror}): pick another --port or --host") from error


def _export_gguf(args: argparse.Namespace, model: OneGenModel | None) -> int:
    model = model or load_model(args.model, "torch")
    path = model.export_gguf(args.out, args.gguf_type)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB, {args.gguf_type}): "
          f"onegen chat --model {path}, or OneGenModel.load({str(path)!r})")
    return 0


def load_model(name: str, backend: BackendName = "auto", **options: Any) -> OneGenModel:
    """Load a model for the command line: its untrained-retrieval warning as one line, no progress bars.

    `options` are further `OneGenModel.load` arguments."""
    from transformers.utils import logging as transformers_logging

    from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UntrainedRetrievalWarning)
            model = OneGenModel.load(name, backend=backend, **options)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    for warning in caught:
        if issubclass(warning.category, UntrainedRetrievalWarning):
            print(f"onegen: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def _open_store(args: argparse.Namespace, model: OneGenModel) -> ChromaDocumentStore:
    from onegen_integrations.store import ChromaDocumentStore

    return ChromaDocumentStore(model, path=args.db, collection=args.collection, host=args.host, port=args.port)


def _chat_store(args: argparse.Namespace, model: OneGenModel) -> ChromaDocumentStore | None:
    """The collection to retrieve from (None with `--retrieval never`); it must hold documents.

    Checked before the first turn, so a missing index is one clear error, not a failure
    in the middle of an answer; and a mistyped --db is not created as a new empty database.
    """
    if args.retrieval == "never":
        return None
    if args.host is None and not (Path(args.db) / SQLITE_FILE).is_file():
        raise EmptyStoreError(
            f"no database at {args.db}: index documents first (onegen index PATH... --db {args.db}), "
            "or pass --retrieval never"
        )
    store = _open_store(args, model)
    if store.count() == 0:
        raise EmptyStoreError(
            f"collection {args.collection!r} is empty: index documents first "
            f"(onegen index PATH... --db {args.db} --collection {args.collection})"
        )
    return store


def _session(model: OneGenModel, store: ChromaDocumentStore | None, args: argparse.Namespace) -> OneGenSession:
    """A session retrieving from `store` with the generation options in `args`."""
    return model.session(retriever=store, **_generation_options(args))


def _scripted_chat(session: OneGenSession, lines: Iterable[str]) -> None:
    """Run each non-blank line as a user message, echoing it as `you> ...`."""
    for line in lines:
        message = line.strip()
        if not message:
            continue
        print(f"you> {message}", flush=True)
        if not _chat_turn(session, message):
            return


def _interactive_chat(session: OneGenSession) -> None:
    print("onegen chat: /reset forgets the conversation, /quit (or Ctrl-D) leaves", file=sys.stderr)
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            print()
            return
        if message and not _chat_turn(session, message):
            return


def _chat_turn(session: OneGenSession, message: str) -> bool:
    """Answer one message or run a command; False when the chat should end."""
    if message == "/quit":
        return False
    if message == "/reset":
        session.reset()
        print("[conversation reset]", file=sys.stderr)
        return True
    _stream_turn(session, message, prompt="onegen> ")
    return True


def _stream_turn(session: OneGenSession, message: str, prompt: str = "") -> None:
    """Stream the answer to stdout after `prompt`; retrievals and the usage line go to stderr.

    Whitespace before the first word is not shown: after an inserted passage the model
    tends to open with blank lines.
    """
    started = mid_line = False
    for event in session.send(message):
        if isinstance(event, TokenEvent):
            text = event.text if started else event.text.lstrip()
            if not text:
                continue
            sys.stdout.write(text if started else prompt + text)
            sys.stdout.flush()
            started = True
            mid_line = not text.endswith("\n")
        elif isinstance(event, RetrievalEvent):
            sys.stdout.flush()
            print(("\n" if mid_line else "") + _retrieval_line(event), file=sys.stderr, flush=True)
            mid_line = False
        elif isinstance(event, DoneEvent):
            print(prompt if not started else "", flush=True)
            print(_usage_line(event), file=sys.stderr, flush=True)


def _retrieval_line(event: RetrievalEvent) -> str:
    if not event.hits:
        return "[retrieved: nothing]"
    lines = []
    for hit in event.hits:
        preview = " ".join(hit.text.split())
        if len(preview) > PREVIEW_CHARS:
            preview = preview[:PREVIEW_CHARS].rstrip() + "…"
        lines.append(f'[retrieved: {hit.id} ({hit.score:.2f}) "{preview}"]')
    return "\n".join(lines)


def _usage_line(done: DoneEvent) -> str:
    usage = done.usage
    rate = usage.completion_tokens / usage.seconds if usage.seconds > 0 else 0.0
    retrievals = f"{usage.retrievals} retrieval{'' if usage.retrievals == 1 else 's'}"
    return (
        f"[{usage.completion_tokens} tokens, {retrievals}, {usage.seconds:.1f} s, {rate:.1f} tokens/s; "
        f"prompt {usage.prompt_tokens}, inserted {usage.inserted_tokens}, cached {usage.cached_tokens}; "
        f"finish: {done.finish_reason}]"
    )
