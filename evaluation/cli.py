"""`onegen eval`: score OneGen against a MiniLM pipeline and the base on held-out SQuAD articles.

    onegen eval --model default --data data/eval --squad dev-v1.1.articles-even.json.gz
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from onegen_evaluation.datasets import EVAL_ARTICLES, EVAL_DIALOGUES, EVAL_SINGLE, load_eval_set
from onegen_evaluation.runner import EVAL_SYSTEMS, evaluate, format_paired, format_table, results_from_json
from transformers.utils import logging as transformers_logging

from onegen_integrations.backends.selection import BACKENDS
from onegen_integrations.cli import load_model
from onegen_integrations.default_model import default_model_dir
from onegen_integrations.errors import OneGenError
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning


def main(argv: Sequence[str] | None = None, *, model: OneGenModel | None = None) -> int:
    """Run the evaluation named by `argv`; print the table. `model` replaces loading `--model`."""
    args = _parser().parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(EVAL_SYSTEMS))
    if unknown:
        raise OneGenError(f"unknown eval systems {', '.join(unknown)}: choose from {', '.join(EVAL_SYSTEMS)}")
    data = load_eval_set(args.data, articles=args.articles, single=args.limit, dialogues=args.dialogues,
                         squad_source=args.squad, distractors=args.distractors)
    print(f"eval: {len(data.single)} single-hop questions, {len(data.dialogues)} dialogues "
          f"({sum(len(c.turns) for c in data.dialogues)} turns), corpus of {len(data.docs)} paragraphs", flush=True)
    results: dict[str, dict] = json.loads(args.out.read_text()) if args.out and args.out.is_file() else {}

    def keep(name: str, result: Any) -> None:
        results[name] = asdict(result)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))

    evaluate(
        data,
        systems,
        trained=lambda: model or load_model(args.model, args.backend),
        base=lambda: _load_base(default_model_dir() if args.base == "base" else Path(args.base)),
        max_new_tokens=args.max_new_tokens,
        max_passage_tokens=args.max_passage_tokens,
        on_result=keep,
    )
    table = results_from_json(results)
    print(format_table(table))
    paired = format_paired(table)
    if paired:
        print(f"\nSame turns, each system alone right:\n{paired}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onegen eval",
        description="Recall@1/@5 and answer EM/F1 on held-out SQuAD: OneGen vs a MiniLM pipeline vs the base.",
    )
    parser.add_argument("--model", default="default", help="the trained OneGen model (default: 'default')")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="as for onegen chat (default auto)")
    parser.add_argument("--base", default="base", help="the untrained generator ('base': the default's base weights)")
    parser.add_argument("--data", type=Path, default=Path("data/eval"), help="converted dev data (make eval-data)")
    parser.add_argument("--squad", type=Path, help="the SQuAD dev JSON, for every accepted answer")
    parser.add_argument("--articles", type=int, default=EVAL_ARTICLES,
                        help=f"held-out articles whose paragraphs are the corpus (default {EVAL_ARTICLES}; the "
                             "default model trained on the dev articles after these)")
    parser.add_argument("--distractors", action="store_true",
                        help="add every other paragraph of --data's SQuAD docs to the corpus (the 24 dev articles: "
                             "the default model trained on the 18 not evaluated)")
    parser.add_argument("--limit", type=int, default=EVAL_SINGLE, help=f"single-hop questions (default {EVAL_SINGLE})")
    parser.add_argument("--dialogues", type=int, default=EVAL_DIALOGUES,
                        help=f"multi-turn dialogues (default {EVAL_DIALOGUES})")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer tokens per turn (default 16)")
    parser.add_argument("--max-passage-tokens", type=int, default=192, help="inserted passages are cut (default 192)")
    parser.add_argument("--systems", default=",".join(EVAL_SYSTEMS),
                        help=f"comma-separated, of {', '.join(EVAL_SYSTEMS)}")
    parser.add_argument("--out", type=Path, help="JSON file the results are merged into; the table shows all of them")
    return parser


def _load_base(path: Path) -> OneGenModel:
    """The untrained generator with OneGen tokens added (their rows untrained), quietly."""
    transformers_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.load(path, add_tokens=True)
