"""Writing the trained model as a directory `OneGenModel.load(dir)` loads in one call.

Full fine-tune: the whole model through `OneGenModel.save`. LoRA: `onegen.json` naming the base,
`adapter/` (peft's `save_pretrained` of a plain LoRA on linear layers, which the runtime merges
without peft) and `onegen_tokens.safetensors` with the trained OneGen token rows (`input`, and
`output` when the head is untied), in the order of `config.tokens.all()`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from onegen_training.modeling import TrainableModel, base_model_dir
from onegen_training.token_rows import trained_rows
from safetensors.torch import save_file

from onegen_integrations.default_model import DEFAULT_MODEL_NAME
from onegen_integrations.model import TOKEN_ROWS_FILE, OneGenModel

ADAPTER_DIR = "adapter"


def export_model(model: TrainableModel, base_model: str, directory: str | Path, run_id: str) -> Path:
    """Write `model` (already gathered on this process) as a OneGen model directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.onegen.model_copy(update={"trained": True, "training_run": run_id})
    if model.peft_model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            OneGenModel(model.lm, model.tokenizer, config).save(directory)
        model.lm.train()  # OneGenModel switches the model to eval mode
        return directory
    base = base_model if base_model == DEFAULT_MODEL_NAME else os.path.relpath(base_model_dir(base_model), directory)
    model.peft_model.save_pretrained(directory / ADAPTER_DIR, save_embedding_layers=False)
    save_file(trained_rows(model.lm), directory / TOKEN_ROWS_FILE)
    config.model_copy(
        update={"base_model": base, "adapter": ADAPTER_DIR, "token_embeddings": TOKEN_ROWS_FILE}
    ).write(directory)
    return directory
