"""Merging a PEFT-format LoRA adapter into loaded weights, without importing peft.

The runtime must not depend on training packages, and a merged adapter costs nothing at
inference, so a OneGen directory that ships only an adapter is folded into its base here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from onegen_integrations.errors import ModelNotFoundError

_PEFT_PREFIX = "base_model.model."


def merge_lora_adapter(model: PreTrainedModel, adapter_dir: str | Path) -> int:
    """Add `scale · B @ A` of every LoRA pair in `adapter_dir` to its base weight.

    Returns the number of weights changed. Supports plain and rank-stabilised LoRA on
    linear layers (what `training/` writes); other PEFT methods raise `ValueError`.
    """
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelNotFoundError(
            f"{adapter_dir} is not a LoRA adapter: it needs adapter_config.json and "
            "adapter_model.safetensors (as peft's save_pretrained writes them)"
        )
    config = json.loads(config_path.read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ValueError(f"{adapter_dir}: only plain LoRA adapters can be merged at load time")
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    tensors = load_file(weights_path)
    merged = 0
    with torch.no_grad():
        for key, lora_a in tensors.items():
            if ".lora_A." not in key:
                continue
            lora_b = tensors[key.replace(".lora_A.", ".lora_B.")]
            module_name = key.split(".lora_A.")[0].removeprefix(_PEFT_PREFIX)
            weight = model.get_submodule(module_name).weight
            delta = (lora_b.float() @ lora_a.float()) * scale
            if config.get("fan_in_fan_out"):
                delta = delta.T
            weight += delta.to(weight.device, weight.dtype)
            merged += 1
    return merged
