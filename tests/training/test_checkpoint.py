"""Checkpoints: safetensors and JSON only, written whole or not at all, never unpickled on resume."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import train_config
from onegen_training.checkpoint import CheckpointError, writing
from onegen_training.cli import main
from onegen_training.config import TrainConfig
from onegen_training.trainer import Trainer

SETTINGS = dict(method="lora", max_steps=4, save_every=1, keep_checkpoints=2, batch_size=2, max_eval_records=2)
FILES = {"state.json", "model.safetensors", "optimizer.safetensors", "rng-0.json", "rng-0.safetensors"}


class Killed(Exception):
    """Stands in for a kill."""


class Touch:
    """Unpickling this creates `path`: what a file planted in a checkpoint directory could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


def kill_after(step: int):
    def callback(state, record) -> None:
        if state.step == step:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def interrupted(tiny_base: Path, facts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of a LoRA run killed after step 2 (checkpoints step 1 and 2)."""
    output = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(Killed):
        Trainer(train_config(tiny_base, facts, output, **SETTINGS), callbacks=[kill_after(2)]).train()
    return output


@pytest.fixture
def run(interrupted: Path, tiny_base: Path, facts: Path, tmp_path: Path) -> TrainConfig:
    """A fresh copy of the interrupted run, ready to resume."""
    shutil.copytree(interrupted, tmp_path / "run")
    return train_config(tiny_base, facts, tmp_path / "run", **SETTINGS)


def checkpoints(config: TrainConfig) -> list[str]:
    return sorted(p.name for p in (config.output_dir / "checkpoints").iterdir())


def plant(path: Path, marker: Path) -> bytes:
    """Write a pickle whose loading would create `marker`; return its bytes."""
    payload = pickle.dumps(Touch(marker))
    path.write_bytes(payload)
    return payload


def test_a_checkpoint_holds_only_safetensors_and_json(run: TrainConfig) -> None:
    assert checkpoints(run) == ["step-00000001", "step-00000002"]
    newest = run.output_dir / "checkpoints" / "step-00000002"
    assert {p.name for p in newest.iterdir()} == FILES
    state = json.loads((newest / "state.json").read_text())
    assert state["training"] == {"step": 2, "run_id": "test-run"}
    assert state["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]


def test_resume_continues_from_the_newest_and_keeps_the_newest_two(run: TrainConfig) -> None:
    trainer = Trainer(run)
    trainer.train()
    starts = [r for r in map(json.loads, (run.output_dir / "log.jsonl").read_text().splitlines()) if r.get("event") == "start"]
    assert starts[-1]["resumed_from"].endswith("step-00000002") and trainer.state.step == 4
    assert checkpoints(run) == ["step-00000003", "step-00000004"]


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scaler.pt"])
def test_resume_never_unpickles_a_file_dropped_into_the_checkpoint(run: TrainConfig, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    payload = plant(run.output_dir / "checkpoints" / "step-00000002" / name, marker)
    with pytest.raises(CheckpointError, match=rf"step-00000002 holds {name}: pickled files .* Start a new output_dir, or delete"):
        Trainer(run).train()
    assert not marker.exists()
    pickle.loads(payload)  # the planted file really would have run code
    assert marker.exists()


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "rng-0.safetensors", "state.json", "rng-0.json"])
def test_a_pickle_in_place_of_a_checkpoint_file_is_refused_unread(run: TrainConfig, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    plant(run.output_dir / "checkpoints" / "step-00000002" / name, marker)
    with pytest.raises(CheckpointError, match=rf"{name} is not (valid JSON|a readable safetensors file)"):
        Trainer(run).train()
    assert not marker.exists()


def test_a_checkpoint_from_accelerates_save_state_is_refused(run: TrainConfig) -> None:
    trainer = Trainer(run)
    trainer.accelerator.register_for_checkpointing(trainer.scheduler, trainer.state)
    trainer.accelerator.save_state(str(run.output_dir / "checkpoints" / "step-00000003"))  # what older versions wrote
    with pytest.raises(CheckpointError, match=r"step-00000003 holds \S+ and \d+ more: pickled files"):
        Trainer(run).train()


def test_the_train_command_prints_the_refusal_and_fails(run: TrainConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plant(run.output_dir / "checkpoints" / "step-00000002" / "custom_checkpoint_0.pkl", tmp_path / "pwned")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run.model_dump(mode="json")))
    assert main(["train", "--config", str(config)]) == 1
    assert "holds custom_checkpoint_0.pkl: pickled files" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_a_save_killed_midway_leaves_the_previous_checkpoints(run: TrainConfig) -> None:
    trainer = Trainer(run)
    with pytest.raises(Killed), writing(run.output_dir / "checkpoints" / "step-00000003", trainer.accelerator) as partial:
        (partial / "model.safetensors").write_bytes(b"half a file")
        raise Killed
    assert checkpoints(run) == [".step-00000003.partial", "step-00000001", "step-00000002"]
    trainer.train()  # resumes from step 2, and its first save clears what the kill left
    assert checkpoints(run) == ["step-00000003", "step-00000004"]


def test_resume_refuses_a_checkpoint_of_other_trainable_weights(run: TrainConfig) -> None:
    full = run.model_copy(update={"method": "full"})
    with pytest.raises(CheckpointError, match=r"holds other trainable weights than this run has .* was `method`, `lora`"):
        Trainer(full).train()
