"""Blend two trained OneGen LoRA models of one base: the update is (1 - w)·ΔW_first + w·ΔW_second, exactly.

`python training/configs/blend_models.py FIRST SECOND W OUT` writes a OneGen model directory.
A LoRA update is `scale · B @ A`; stacking the two adapters' `A` rows and their weighted `B`
columns gives one adapter of twice the rank whose update is the weighted sum (the scale is kept
by doubling `lora_alpha` with the rank). The OneGen token rows are blended with the same
weights. docs/tools.md measures blends of the retrieval default with its tool-trained
continuation (`runs/tools/model`): how much calling is traded for retrieval.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _contract(directory: Path) -> dict:
    return json.loads((directory / "onegen.json").read_text())


def blend(first: Path, second: Path, weight: float, out: Path) -> None:
    """Write the blend of `first` and `second` (`weight` of the second) to `out`."""
    settings = [json.loads((d / _contract(d)["adapter"] / "adapter_config.json").read_text()) for d in (first, second)]
    shape = [(s["r"], s["lora_alpha"], sorted(s["target_modules"]), s.get("use_rslora", False)) for s in settings]
    if shape[0] != shape[1] or shape[0][3]:
        raise ValueError(f"the adapters differ in rank, alpha or layers, or use rsLoRA: {shape}; they cannot be stacked")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(second, out)
    adapter = out / _contract(second)["adapter"]
    a, b = (load_file(d / _contract(d)["adapter"] / "adapter_model.safetensors") for d in (first, second))
    stacked = {}
    for name in a:
        if ".lora_A." in name:
            stacked[name] = torch.cat([a[name].float(), b[name].float()], dim=0)
        else:
            stacked[name] = torch.cat([(1 - weight) * a[name].float(), weight * b[name].float()], dim=1)
    save_file({name: tensor.contiguous() for name, tensor in stacked.items()}, adapter / "adapter_model.safetensors")
    config = {**settings[1], "r": 2 * settings[1]["r"], "lora_alpha": 2 * settings[1]["lora_alpha"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2))
    rows_name = _contract(second)["token_embeddings"]
    rows_a, rows_b = load_file(first / _contract(first)["token_embeddings"]), load_file(second / rows_name)
    save_file({k: ((1 - weight) * rows_a[k].float() + weight * rows_b[k].float()).contiguous() for k in rows_b}, out / rows_name)
    contract = _contract(second)
    contract["training_run"] = f"{_contract(first)['training_run']} + {weight:g} x ({contract['training_run']})"
    (out / "onegen.json").write_text(json.dumps(contract, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    blend(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
