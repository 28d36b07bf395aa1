"""Fixtures for the training tests: tiny random bases on disk and a synthetic fact corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from onegen_training.config import TrainConfig
from onegen_training.trainer import Trainer
from transformers import LlamaForCausalLM

from tests.conftest import make_tiny_model

KEYS = [
    "Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Rome",
    "Berlin", "Madrid", "Dublin", "Vienna", "Prague", "Athens", "Havana", "Nairobi",
]


def save_tiny_base(directory: Path, *, tied: bool = True, seed: int = 0) -> Path:
    """Save a tiny random Llama (default tokenizer) as a transformers directory."""
    tiny = make_tiny_model(seed)
    model = tiny.hf_model
    if not tied:
        config = model.config
        config.tie_word_embeddings = False
        model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tiny.tokenizer.save_pretrained(directory)
    return directory


def write_facts(directory: Path, count: int = 16, seed: int = 0) -> Path:
    """A key → value corpus: one document per fact, one question per fact, two hard negatives each."""
    rng = random.Random(seed)
    keys = KEYS[:count]
    values = rng.sample(range(100, 1000), count)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "docs.jsonl", "w") as docs, open(directory / "train.jsonl", "w") as train:
        for i, (key, value) in enumerate(zip(keys, values)):
            docs.write(json.dumps({"id": f"d{i}", "text": f"The code of {key} is {value}."}) + "\n")
            negatives = [f"d{j}" for j in rng.sample([j for j in range(count) if j != i], 2)]
            answer = {"role": "assistant", "content": f"[RQ] {value}", "retrievals": [{"positives": [f"d{i}"], "negatives": negatives}]}
            record = {"id": f"q{i}", "messages": [{"role": "user", "content": f"What is the code of {key}?"}, answer]}
            train.write(json.dumps(record) + "\n")
    return directory


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with tied embeddings, saved once per test run."""
    return save_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic fact corpus (16 facts)."""
    return write_facts(tmp_path_factory.mktemp("facts"))


def train_config(base: Path, data: Path, output: Path, **overrides: Any) -> TrainConfig:
    """A small, fast config over `data` (its train.jsonl doubles as the held-out set)."""
    settings: dict[str, Any] = dict(
        base_model=str(base), docs=data / "docs.jsonl", train=data / "train.jsonl", eval=data / "train.jsonl",
        output_dir=output, method="full", batch_size=4, learning_rate=3e-3, max_steps=4, save_every=1000,
        eval_every=1000, warmup_steps=0, schedule="constant", seed=0, run_id="test-run", onegen={"system_prompt": ""},
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def learned(tiny_base: Path, facts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Full fine-tune of the tiny model on the 16 facts (about 30 s on 2 CPU cores)."""
    config = train_config(tiny_base, facts, tmp_path_factory.mktemp("learned"), max_steps=30, batch_size=16,
                          learning_rate=2e-3, lambda_gen=0.3, temperature=0.1, eval_every=30)
    trainer = Trainer(config)
    before = trainer.evaluate()
    model_dir = trainer.train()
    log = [json.loads(line) for line in (config.output_dir / "log.jsonl").read_text().splitlines()]
    return {"before": before, "log": [r for r in log if "step" in r], "dir": model_dir, "trainer": trainer}
