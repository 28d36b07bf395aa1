"""Command line: `python -m onegen_training --config CONFIG.yaml`, plus `convert`, `mine`, `validate`, `bench`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("--"):
        argv = ["train", *argv]
    parser = argparse.ArgumentParser(prog="python -m onegen_training", description="Train a OneGen model from a causal LM.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train with a YAML config (the default command)")
    train.add_argument("--config", required=True, type=Path)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (YAML value), e.g. --set max_steps=10")
    convert = commands.add_parser("convert", help="convert a public data set into docs/train/eval JSONL")
    convert.add_argument("format", choices=["squad", "dialogue", "hotpot"])
    convert.add_argument("source", type=Path)
    convert.add_argument("out_dir", type=Path)
    convert.add_argument("--eval-fraction", type=float, default=0.2)
    convert.add_argument("--negatives", type=int, default=3, help="hard negatives per retrieval (SQuAD formats)")
    convert.add_argument("--turns", type=int, default=3, help="turns per dialogue (dialogue format)")
    convert.add_argument("--rounds", type=int, default=1, help="reshuffled passes over each article (dialogue format)")
    convert.add_argument("--seed", type=int, default=0)
    mine = commands.add_parser("mine", help="replace each retrieval's hard negatives with a trained model's top-ranked non-positives")
    mine.add_argument("--model", required=True, help="a trained OneGen model directory, or 'default'")
    mine.add_argument("--docs", required=True, type=Path)
    mine.add_argument("--records", required=True, type=Path)
    mine.add_argument("--out", required=True, type=Path)
    mine.add_argument("--negatives", type=int, default=3, help="negatives per retrieval, hardest first")
    mine.add_argument("--max-doc-tokens", type=int, default=256, help="cut documents as training does")
    mine.add_argument("--batch-size", type=int, default=16)
    mine.add_argument("--chunk-tokens", type=int, default=None, help="run rows in length-sorted chunks of this many tokens (faster on a CPU)")
    validate = commands.add_parser("validate", help="check docs.jsonl and a records file")
    validate.add_argument("docs", type=Path)
    validate.add_argument("records", type=Path)
    bench = commands.add_parser("bench", help="time training steps on synthetic data")
    bench.add_argument("--method", choices=["lora", "full"], default="lora")
    bench.add_argument("--batch-size", type=int, default=4)
    bench.add_argument("--length", type=int, default=256)
    bench.add_argument("--steps", type=int, default=5)
    bench.add_argument("--base-model", default="default")
    bench.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "train" and any("=" not in item for item in args.set):
        parser.error(f"--set takes KEY=VALUE, got {next(i for i in args.set if '=' not in i)!r}")
    from onegen_training.checkpoint import CheckpointError
    from onegen_training.data import DataFormatError

    try:
        return _run(args)
    except (DataFormatError, CheckpointError) as error:  # their messages say what to do: no traceback
        print(f"error: {error}", file=sys.stderr)
    except IsADirectoryError as error:
        print(f"error: {error.filename} is a directory: give the path of a file", file=sys.stderr)
    except FileNotFoundError as error:
        # a path the user got wrong; errors of our own (ModelNotFoundError) carry a fuller message
        missing = error.filename and str(error).startswith("[Errno")
        print(f"error: {error.filename}: no such file or directory: check the path" if missing else f"error: {error}",
              file=sys.stderr)
    return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        return _train(args)
    if args.command == "convert":
        return _convert(args)
    if args.command == "mine":
        from onegen_training.remine import remine_file

        count = remine_file(args.model, args.docs, args.records, args.out, args.negatives,
                            max_doc_tokens=args.max_doc_tokens, batch_size=args.batch_size, chunk_tokens=args.chunk_tokens)
        print(json.dumps({"out": str(args.out), "records": count}))
        return 0
    if args.command == "validate":
        return _validate(args)
    from onegen_training.bench import run_bench

    print(json.dumps(run_bench(args.method, args.batch_size, args.length, args.steps, args.base_model, args.gradient_checkpointing)))
    return 0


def _train(args: argparse.Namespace) -> int:
    from onegen_training.config import TrainConfig
    from onegen_training.trainer import Trainer

    overrides = dict(item.split("=", 1) for item in args.set)
    try:
        config = TrainConfig.from_yaml(args.config, {k: yaml.safe_load(v) for k, v in overrides.items()})
    except (yaml.YAMLError, ValidationError) as error:
        print(f"error: {args.config} is not a valid training config (fields: training/config.py): {error}", file=sys.stderr)
        return 1
    print(f"model written to {Trainer(config).train()}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from onegen_training.converters import write_dataset

    if args.format == "hotpot":
        from onegen_training.converters.hotpot import convert_hotpot

        docs, records = convert_hotpot(args.source)
    else:
        from onegen_training.converters.squad import documents, read_squad, single_hop

        articles = read_squad(args.source)
        docs = documents(articles)
        if args.format == "squad":
            records = single_hop(articles, args.negatives)
        else:
            from onegen_training.converters.dialogue import dialogues

            records = dialogues(articles, args.turns, args.negatives, args.seed, args.rounds)
    counts = write_dataset(args.out_dir, docs, records, args.eval_fraction, args.seed)
    print(json.dumps({"out_dir": str(args.out_dir), **counts}))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from onegen_training.data import load_documents, load_records

    records = load_records(args.records, load_documents(args.docs))
    print(f"{args.records}: {len(records)} valid records")
    return 0
