"""Training throughput on synthetic records: seconds/step, tokens/s and peak RSS.

`python -m onegen_training bench --method lora --batch-size 4 --length 256 --steps 5`
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

from onegen_training.config import TrainConfig
from onegen_training.data import write_jsonl
from onegen_training.trainer import Trainer


def run_bench(method: str, batch_size: int, length: int, steps: int, base_model: str = "default",
              gradient_checkpointing: bool = False) -> dict[str, Any]:
    """Train `steps` steps (after one warm-up step) on records of about `length` tokens.

    `tokens_per_step` counts the real (unpadded) tokens of sequences and document rows.
    """
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        filler = " ".join(["word"] * max(length // 3, 1))
        count = batch_size * (steps + 1)
        write_jsonl(data / "docs.jsonl", [{"id": f"d{i}", "text": f"Fact {i}: {filler}"} for i in range(count)])
        write_jsonl(data / "train.jsonl", [
            {"messages": [{"role": "user", "content": f"Question {i}: {filler}"},
                          {"role": "assistant", "content": f"[RQ] Answer {i}: {filler}", "retrievals": [{"positives": [f"d{i}"]}]}]}
            for i in range(count)
        ])
        config = TrainConfig(base_model=base_model, method=method, docs=data / "docs.jsonl", train=data / "train.jsonl",
                             output_dir=data / "run", batch_size=batch_size, max_steps=steps + 1, save_every=10**9,
                             eval_every=10**9, max_length=length * 3, gradient_checkpointing=gradient_checkpointing)
        records: list[dict[str, Any]] = []
        trainer = Trainer(config, callbacks=[lambda state, record: records.append(record)])
        trainer.export = lambda: data  # measuring steps, not the export
        trainer.train()
    timed = records[1:]
    seconds = sum(r["seconds"] for r in timed) / len(timed)
    tokens = sum(r["tokens_per_s"] * r["seconds"] for r in timed) / len(timed)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method, "batch_size": batch_size, "length": length,
        "tokens_per_step": round(tokens), "seconds_per_step": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
        "peak_rss_mb": round(rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20, 1),
        "gradient_checkpointing": gradient_checkpointing,
    }
