"""Converters from public data sets to the training format (see training/data.py)."""

from __future__ import annotations

from pathlib import Path

from onegen_training.data import Record, write_jsonl
from onegen_training.split import split_records


def write_dataset(
    out_dir: str | Path, docs: list[dict[str, str]], records: list[Record], eval_fraction: float, seed: int
) -> dict[str, int]:
    """Write `docs.jsonl`, `train.jsonl` and `eval.jsonl` (split by whole groups) into `out_dir`."""
    out_dir = Path(out_dir)
    train, held_out = split_records(records, eval_fraction, seed)
    return {
        "docs": write_jsonl(out_dir / "docs.jsonl", docs),
        "train": write_jsonl(out_dir / "train.jsonl", train),
        "eval": write_jsonl(out_dir / "eval.jsonl", held_out),
    }
