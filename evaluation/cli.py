"""`onegen eval`: score OneGen against a MiniLM pipeline and the base on held-out SQuAD articles;
`onegen eval tools`: score its tool calls on held-out tools and requests.

    onegen eval --model default --data data/eval --squad dev-v1.1.articles-even.json.gz
    onegen eval tools --model default --out runs/eval/tools.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from onegen_evaluation.datasets import EVAL_ARTICLES, EVAL_DIALOGUES, EVAL_SINGLE, load_eval_set
from onegen_evaluation.runner import EVAL_SYSTEMS, evaluate, format_paired, format_table, results_from_json
from onegen_evaluation.tool_cases import DOCS, held_out_cases
from onegen_evaluation.tool_use import TOOL_SYSTEMS, format_tool_table, run_tool_cases, tool_results_from_json
from transformers.utils import logging as transformers_logging

from onegen_integrations.backends.selection import BACKENDS
from onegen_integrations.cli import load_model
from onegen_integrations.default_model import default_model_dir
from onegen_integrations.errors import OneGenError
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning


def main(argv: Sequence[str] | None = None, *, model: OneGenModel | None = None) -> int:
    """Run the evaluation named by `argv`; print the table. `model` replaces loading `--model`.
    `tools` as the first argument runs the tool-use evaluation (`tools_main`) instead."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["tools"]:
        return tools_main(arguments[1:], model=model)
    args = _parser().parse_args(arguments)
    systems = _systems(args.systems, EVAL_SYSTEMS)
    data = load_eval_set(args.data, articles=args.articles, single=args.limit, dialogues=args.dialogues,
                         squad_source=args.squad, distractors=args.distractors)
    print(f"eval: {len(data.single)} single-hop questions, {len(data.dialogues)} dialogues "
          f"({sum(len(c.turns) for c in data.dialogues)} turns), corpus of {len(data.docs)} paragraphs", flush=True)
    results = _saved(args.out)
    evaluate(
        data,
        systems,
        trained=lambda: model or load_model(args.model, args.backend),
        base=lambda: _load_base(args.base),
        max_new_tokens=args.max_new_tokens,
        max_passage_tokens=args.max_passage_tokens,
        on_result=lambda name, result: _keep(results, name, result, args.out),
    )
    table = results_from_json(results)
    print(format_table(table))
    paired = format_paired(table)
    if paired:
        print(f"\nSame turns, each system alone right:\n{paired}")
    return 0


def tools_main(argv: Sequence[str], *, model: OneGenModel | None = None) -> int:
    """`onegen eval tools`: run the held-out tool-use cases; print the table."""
    args = _tools_parser().parse_args(argv)
    systems = _systems(args.systems, TOOL_SYSTEMS)
    cases = held_out_cases(args.limit)
    kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(c.kind for c in cases).items())
    print(f"eval tools: {len(cases)} cases ({kinds}), corpus of {len(DOCS)} documents", flush=True)
    results = _saved(args.out)
    for name in systems:
        chosen = (model or load_model(args.model, args.backend)) if name == "onegen" else _load_base(args.base)
        description = f"{chosen.name}, tools in the system prompt, retrieval auto"
        print(f"eval tools: running {name} ({description})", flush=True)
        result = run_tool_cases(chosen, cases, DOCS, name=name, description=description,
                                max_new_tokens=args.max_new_tokens, max_passage_tokens=args.max_passage_tokens)
        _keep(results, name, result, args.out)
    print(format_tool_table(tool_results_from_json(results)))
    return 0


def _systems(text: str, known: Sequence[str]) -> list[str]:
    """The comma-separated system names of `text`, all of them in `known`."""
    systems = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(known))
    if unknown:
        raise OneGenError(f"unknown eval systems {', '.join(unknown)}: choose from {', '.join(known)}")
    return systems


def _saved(out: Path | None) -> dict[str, dict]:
    """The results already in `out`, which this run's are merged into."""
    return json.loads(out.read_text()) if out and out.is_file() else {}


def _keep(results: dict[str, dict], name: str, result: Any, out: Path | None) -> None:
    """Add `result` to `results` and write them all to `out`, so a long run is saved as it goes."""
    results[name] = asdict(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, ensure_ascii=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onegen eval",
        description="Recall@1/@5 and answer EM/F1 on held-out SQuAD: OneGen vs a MiniLM pipeline vs the base.",
        epilog="onegen eval tools --help: the tool-use evaluation.",
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


def _tools_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onegen eval tools",
        description="Tool choice, exact arguments, false calls and retrieval on held-out tools and requests "
                    "(docs/evaluation.md, Tool use).",
    )
    parser.add_argument("--model", default="default", help="the trained OneGen model (default: 'default')")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="as for onegen chat (default auto)")
    parser.add_argument("--base", default="base", help="the untrained generator ('base': the default's base weights)")
    parser.add_argument("--systems", default=",".join(TOOL_SYSTEMS),
                        help=f"comma-separated, of {', '.join(TOOL_SYSTEMS)} (default: both)")
    parser.add_argument("--limit", type=int, help="run only this many cases, taken in turn from each kind (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="answer tokens per case (default 96)")
    parser.add_argument("--max-passage-tokens", type=int, default=192, help="inserted passages are cut (default 192)")
    parser.add_argument("--out", type=Path, help="JSON file the results are merged into; the table shows all of them")
    return parser


def _load_base(name: str) -> OneGenModel:
    """The untrained generator (`base`: the default's base weights, or a directory) with OneGen
    tokens added (their rows untrained), quietly."""
    transformers_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.load(default_model_dir() if name == "base" else Path(name), add_tokens=True)
