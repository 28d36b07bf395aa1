"""Checkpoints that resume exactly and load without unpickling anything.

A checkpoint is a directory `checkpoints/step-N`:

    state.json              format, step and run id, scheduler, optimizer param groups and
                            non-tensor state, gradient scaler, accelerate's micro-step counter
    model.safetensors       the trainable weights (frozen base weights are rebuilt from the base)
    optimizer.safetensors   the optimizer's state tensors, `{parameter index}.{name}`
    rng-R.json              process R's Python and NumPy RNG states
    rng-R.safetensors       process R's torch RNG states (CPU, and each CUDA/XPU device)

Tensors are safetensors and everything else JSON, so whoever can write a run's directory cannot
make a resume run code, as a pickle (accelerate's `*.pkl`, `torch.load` of `*.bin`) would. A
directory is written beside its final name and renamed into place, so a kill mid-save leaves
the previous checkpoints as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

FORMAT = "onegen-training-checkpoint/1"
STATE = "state.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
PICKLED = {".pkl", ".pickle", ".bin", ".pt", ".pth"}
"""Suffixes of files that `torch.load` or `pickle` would read: never opened on resume."""
DEVICE_RNGS = ("cuda", "xpu")


class CheckpointError(RuntimeError):
    """A checkpoint directory cannot be resumed from; the message says what to do instead."""


class Stateful(Protocol):
    """What a scheduler, a gradient scaler or the training state offer."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Checkpointed:
    """The live objects a checkpoint is written from and restored into."""

    model: torch.nn.Module
    """The unwrapped model; its parameters with `requires_grad` are saved."""
    optimizer: Any
    """A torch optimizer (or accelerate's wrapper of one)."""
    scheduler: Stateful
    training: Stateful
    """The trainer's own state (step, run id)."""
    scaler: Stateful | None = None
    """The fp16 gradient scaler, when there is one."""


@contextlib.contextmanager
def writing(directory: Path, accelerator: Accelerator) -> Iterator[Path]:
    """Yield an empty folder beside `directory` for every process to write into, then rename it
    to `directory` (replacing one of that name): readers see a whole checkpoint or none."""
    partial = directory.with_name(f".{directory.name}.partial")  # hidden from the `step-*` glob
    if accelerator.is_main_process:
        for stale in [*directory.parent.glob(".*.partial"), *directory.parent.glob(".*.replaced")]:
            shutil.rmtree(stale)  # left by a kill mid-save
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    yield partial
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in [*(p for p in partial.rglob("*") if p.is_file()), partial]:
            _fsync(path)  # on disk before the rename, so a crash cannot leave a named but empty checkpoint
        replaced = directory.with_name(f".{directory.name}.replaced")
        if directory.exists():
            directory.rename(replaced)
        partial.rename(directory)
        _fsync(directory.parent)
        shutil.rmtree(replaced, ignore_errors=True)
    accelerator.wait_for_everyone()


def write_checkpoint(directory: Path, accelerator: Accelerator, parts: Checkpointed) -> None:
    """Write `parts` and this process's RNG states into `directory` (every process calls it)."""
    rank = accelerator.process_index
    python, numpy = random.getstate(), np.random.get_state()
    _write_json(directory / f"rng-{rank}.json", {
        "python": [python[0], list(python[1]), python[2]],
        "numpy": [numpy[0], numpy[1].tolist(), int(numpy[2]), int(numpy[3]), float(numpy[4])],
    })
    rngs = {"torch": torch.get_rng_state()}
    for name, module in _device_rng_modules():
        rngs.update({f"{name}.{i}": state for i, state in enumerate(module.get_rng_state_all())})
    save_file(rngs, directory / f"rng-{rank}.safetensors")
    if not accelerator.is_main_process:
        return  # data parallel: the weights and the optimizer are the same on every process
    weights = {name: p.detach().contiguous().cpu() for name, p in parts.model.named_parameters() if p.requires_grad}
    save_file(weights, directory / WEIGHTS)
    optimizer = parts.optimizer.state_dict()
    tensors, other = {}, {}
    for index, values in optimizer["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                other.setdefault(str(index), {})[key] = value
    save_file(tensors, directory / OPTIMIZER)
    _write_json(directory / STATE, {
        "format": FORMAT,
        "processes": accelerator.num_processes,
        "training": parts.training.state_dict(),
        "accelerator_step": accelerator.step,
        "scheduler": parts.scheduler.state_dict(),
        "optimizer": {"param_groups": optimizer["param_groups"], "state": other},
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
    })


def read_checkpoint(directory: Path, accelerator: Accelerator, parts: Checkpointed) -> None:
    """Restore `parts`, accelerate's step counter and this process's RNG states from `directory`.

    Reads only the `.json` and `.safetensors` files named above; a directory holding a pickled
    file (an older version's checkpoint, or something dropped there) is refused unopened.
    """
    refuse_pickled_files(directory)
    state = _read_json(directory / STATE)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{directory / STATE} is not a checkpoint of format {FORMAT}: {_start_over(directory)}")
    rank = accelerator.process_index
    rng_file = directory / f"rng-{rank}.json"
    if not rng_file.is_file():
        raise CheckpointError(
            f"{directory} holds no RNG state for process {rank}: it was written by {state.get('processes')} "
            f"process(es); resume with as many, or {_start_over(directory)}"
        )
    try:
        _restore(directory, state, accelerator, parts)
        _restore_rng(_read_json(rng_file), _read_tensors(directory / f"rng-{rank}.safetensors"))
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"{directory} is damaged ({type(error).__name__}: {error}): {_start_over(directory)}") from error


def refuse_pickled_files(directory: Path) -> None:
    """Raise `CheckpointError` if `directory` holds a file that only pickle can read."""
    pickled = sorted(p for p in directory.rglob("*") if p.suffix in PICKLED)
    if pickled:
        raise CheckpointError(
            f"{directory} holds {pickled[0].name}{f' and {len(pickled) - 1} more' if len(pickled) > 1 else ''}: "
            "pickled files (from an older version of training, or put there by someone) could run code when "
            "loaded, so this checkpoint is not loaded. Start a new output_dir, or delete "
            f"{directory.parent} to train from the start"
        )


def _restore(directory: Path, state: dict[str, Any], accelerator: Accelerator, parts: Checkpointed) -> None:
    weights = _read_tensors(directory / WEIGHTS)
    trainable = {name: p for name, p in parts.model.named_parameters() if p.requires_grad}
    if weights.keys() != trainable.keys():
        differ = sorted(weights.keys() ^ trainable.keys())
        raise CheckpointError(
            f"{directory / WEIGHTS} holds other trainable weights than this run has ({differ[0]}, "
            f"{len(differ)} in all differ): was `method`, `lora` or the base model changed? Restore the "
            f"run's config, or {_start_over(directory)}"
        )
    with torch.no_grad():
        for name, parameter in trainable.items():
            if weights[name].shape != parameter.shape:
                raise CheckpointError(f"{directory / WEIGHTS}: {name} has shape {tuple(weights[name].shape)}, "
                                      f"this run's has {tuple(parameter.shape)}: {_start_over(directory)}")
            parameter.copy_(weights[name])
    optimizer = state["optimizer"]
    values: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in optimizer["state"].items()}
    for key, tensor in _read_tensors(directory / OPTIMIZER).items():
        index, name = key.split(".", 1)
        values.setdefault(int(index), {})[name] = tensor
    current = parts.optimizer.state_dict()
    parts.optimizer.load_state_dict({"state": values, "param_groups": _like(optimizer["param_groups"], current["param_groups"])})
    parts.scheduler.load_state_dict(_like(state["scheduler"], parts.scheduler.state_dict()))
    parts.training.load_state_dict(state["training"])
    if parts.scaler is not None and state["scaler"]:
        parts.scaler.load_state_dict(state["scaler"])
    accelerator.step = int(state["accelerator_step"])


def _restore_rng(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    for device, module in _device_rng_modules():
        states = [tensors[f"{device}.{i}"] for i in range(module.device_count()) if f"{device}.{i}" in tensors]
        module.set_rng_state_all(states)


def _device_rng_modules() -> list[tuple[str, Any]]:
    modules = [(name, getattr(torch, name, None)) for name in DEVICE_RNGS]
    return [(name, module) for name, module in modules if module is not None and module.is_available()]


def _like(value: Any, template: Any) -> Any:
    """`value` read back from JSON with the tuples of `template` restored (AdamW's `betas`)."""
    if isinstance(value, list) and isinstance(template, (list, tuple)) and len(value) == len(template):
        items = [_like(v, t) for v, t in zip(value, template)]
        return tuple(items) if isinstance(template, tuple) else items
    if isinstance(value, dict) and isinstance(template, dict):
        return {k: _like(v, template[k]) if k in template else v for k, v in value.items()}
    return value


def _plain(value: Any, where: str) -> Any:
    """`value` as JSON data; anything else is a bug in what is being checkpointed."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"cannot checkpoint {where}: a {type(value).__name__} is not JSON data (tensors go to safetensors)")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(_plain(data, path.stem)), encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} is incomplete (no {path.name}): {_start_over(path.parent)}") from None
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): {_start_over(path.parent)}") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is incomplete (no {path.name}): {_start_over(path.parent)}")
    try:
        return load_file(path)
    except Exception as error:  # safetensors reports a damaged file with its own exception type
        raise CheckpointError(f"{path} is not a readable safetensors file ({error}): {_start_over(path.parent)}") from None


def _start_over(directory: Path) -> str:
    return f"delete {directory} to resume from the checkpoint before it, or start a new output_dir"


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a folder
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
