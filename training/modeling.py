"""The model being trained: a causal LM with OneGen tokens, fully trainable or under LoRA."""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from onegen_training.collator import IGNORE
from onegen_training.config import TrainConfig
from onegen_training.token_rows import wrap_token_rows
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from onegen_integrations.config import OneGenConfig
from onegen_integrations.default_model import DEFAULT_MODEL_NAME, default_model_dir
from onegen_integrations.errors import ModelNotFoundError
from onegen_integrations.tokens import add_onegen_tokens


def base_model_dir(base_model: str) -> Path:
    """The directory of `base_model`: `default` (the embedded SmolLM2) or a local path."""
    if base_model == DEFAULT_MODEL_NAME:
        return default_model_dir()
    path = Path(base_model).expanduser()
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"base model {base_model!r} is not a transformers model directory (no config.json): "
            "give 'default' or a local path; nothing is downloaded"
        )
    return path


@dataclass
class TrainableModel:
    """The pieces training needs: the LM (LoRA layers injected, if any) and how to save it."""

    lm: PreTrainedModel
    """The causal LM the forward pass runs (with LoRA layers and token-row wrappers when LoRA)."""
    tokenizer: PreTrainedTokenizerBase
    onegen: OneGenConfig
    """The contract the model is trained for (tokens, templates, system prompt)."""
    peft_model: Any | None = None
    """The peft model (LoRA only), for `save_pretrained` of the adapter."""


def build_model(config: TrainConfig) -> TrainableModel:
    """Load the base, add the OneGen tokens (`add_onegen_tokens`), then set up LoRA or full training.

    Under LoRA only the adapter and the OneGen token rows (a delta on the frozen embedding)
    train; the rest of the embedding and the head stay frozen. With `lora.layers` the adapter
    covers only the last layers and the input rows get no gradient (see `wrap_token_rows`).
    """
    path = base_model_dir(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    onegen = OneGenConfig.model_validate(config.onegen)
    add_onegen_tokens(lm, tokenizer, onegen.tokens)
    if lm.config.pad_token_id is None:
        lm.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    if config.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.config.use_cache = False
    if config.method == "full":
        return TrainableModel(lm, tokenizer, onegen)
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    depth = lm.config.num_hidden_layers
    if lora.layers is not None and lora.layers > depth:
        raise ValueError(f"lora.layers is {lora.layers} but the model has {depth} layers: give at most {depth}")
    peft_config = LoraConfig(
        layers_to_transform=None if lora.layers is None else list(range(depth - lora.layers, depth)),
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_linear_names(lm) if lora.target_modules == "all-linear" and lora.layers else lora.target_modules,
        use_rslora=lora.rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(lm, peft_config)
    inner = peft_model.get_base_model()
    wrap_token_rows(inner, tokenizer.convert_tokens_to_ids(onegen.tokens.all()), train_input=lora.layers is None)
    if config.init_from is not None:
        _load_trained(peft_model, inner, config.init_from, "init_from")
    return TrainableModel(inner, tokenizer, onegen, peft_model)


def anchor_reference(model: TrainableModel, config: TrainConfig) -> OneGenObjective:
    """What the anchors compare against: a frozen copy of the model as training starts, or of
    `config.anchor_model` when set (the same LoRA layers holding that model's weights)."""
    peft_model, lm = deepcopy((model.peft_model, model.lm))  # copied together: the LM stays the peft model's
    if config.anchor_model is not None:
        _load_trained(peft_model, lm, config.anchor_model, "anchor_model")
    return OneGenObjective(lm, config.chunk_tokens).frozen()


def _load_trained(peft_model: Any, lm: PreTrainedModel, directory: Path, role: str) -> None:
    """Load a trained OneGen LoRA model's adapter and token rows into the fresh ones (`role`:
    the config field that names it, for the errors)."""
    from peft import set_peft_model_state_dict

    contract = directory / "onegen.json"
    if not contract.is_file():
        raise ModelNotFoundError(f"{role} {str(directory)!r} is not a OneGen model directory (no onegen.json)")
    files = json.loads(contract.read_text())
    if not files.get("adapter"):
        raise ValueError(f"{role} {str(directory)!r} holds merged weights, not a LoRA adapter: give it as base_model")
    weights = load_file(directory / files["adapter"] / "adapter_model.safetensors")
    misfit = f"{role}'s adapter does not fit the configured LoRA: set lora as its adapter_config.json says"
    try:
        loaded = set_peft_model_state_dict(peft_model, {name: w.float() for name, w in weights.items()})
    except RuntimeError as error:  # shapes differ: another rank
        raise ValueError(f"{misfit} ({str(error).splitlines()[1].strip()})") from error
    missing = [name for name in loaded.missing_keys if "lora_" in name]
    if loaded.unexpected_keys or missing:
        raise ValueError(f"{misfit} ({len(missing)} missing, {len(loaded.unexpected_keys)} unexpected weights)")
    rows = load_file(directory / files["token_embeddings"])
    embedding, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    with torch.no_grad():
        embedding.delta.copy_(rows["input"] - embedding.embedding.weight[embedding.token_ids].float())
        if "output" in rows:
            head.delta.copy_(rows["output"] - head.head.weight[head.token_ids].float())


def _linear_names(lm: PreTrainedModel) -> list[str]:
    """The names of the linear layers inside the decoder (what peft's `all-linear` picks), spelled
    out because peft takes `layers_to_transform` only with a list."""
    decoder = lm.get_decoder()
    return sorted({name.rsplit(".", 1)[-1] for name, module in decoder.named_modules() if isinstance(module, nn.Linear)})


class OneGenObjective(nn.Module):
    """One forward over a batch: CE of the sequences and the retrieval vectors.

    Wraps the LM so that data-parallel wrappers (DDP, DeepSpeed) see every computation in one
    `forward`. Vectors are the last layer's hidden states after the final norm, unnormalised.
    """

    def __init__(self, lm: PreTrainedModel, chunk_tokens: int | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.chunk_tokens = chunk_tokens

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return `ce` (mean over labelled tokens), `queries` [q, h], `documents` [d, h] and
        `held_logits`: the logits of the labelled tokens of `held_rows` (a subset of the CE's)."""
        hidden = self.states(batch["input_ids"], batch["attention_mask"])
        learned = _learned(batch)
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][learned])
        targets = batch["labels"][:, 1:][learned]
        ce = F.cross_entropy(logits.float(), targets) if learned.any() else hidden.sum() * 0.0
        return {"ce": ce, "held_logits": logits[_held(learned, batch)[learned]], **self._vectors(hidden, batch)}

    def anchors(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the anchors compare: `forward`'s vectors and `held_logits`, without the CE."""
        hidden = self.states(batch["input_ids"], batch["attention_mask"])
        held_logits = self.lm.get_output_embeddings()(hidden[:, :-1][_held(_learned(batch), batch)])
        return {"held_logits": held_logits, **self._vectors(hidden, batch)}

    def _vectors(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rows = self.rows(batch["row_ids"], batch["row_mask"])
        n_docs = batch["positive_mask"].shape[1]
        queries = torch.cat([hidden[batch["query_rows"], batch["query_cols"]], rows[n_docs:]])
        return {"queries": queries, "documents": rows[:n_docs]}

    def frozen(self) -> OneGenObjective:
        """This objective, never to train (the anchors' reference): evaluation mode, no gradients."""
        self.eval().requires_grad_(False)
        return self

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states after the final norm, [batch, length, hidden]; zero at padding
        when the rows run in chunks.

        Rows are right-padded and attention is causal, so a row's states do not depend on the
        padding after it: with `chunk_tokens` the rows run longest first in chunks of at most
        that many padded tokens, each cut to its own longest row, which skips the padding's
        compute.
        """
        decoder = self.lm.get_decoder()
        if self.chunk_tokens is None:
            return decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        lengths = attention_mask.sum(dim=1).tolist()
        order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
        parts = []
        for chunk in _chunks(order, lengths, self.chunk_tokens):
            width = max(lengths[chunk[0]], 1)
            index = torch.tensor(chunk, device=input_ids.device)
            part = decoder(input_ids=input_ids[index, :width], attention_mask=attention_mask[index, :width]).last_hidden_state
            parts.append(F.pad(part, (0, 0, 0, input_ids.shape[1] - width)))
        return torch.cat(parts)[torch.tensor(order, device=input_ids.device).argsort()]

    def rows(self, row_ids: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
        """Hidden state at the last real token of each right-padded row (`"{text}[RD]"` etc.)."""
        if row_ids.numel() == 0:
            return torch.zeros(0, self.lm.config.hidden_size, device=row_ids.device)
        states = self.states(row_ids, row_mask)
        last = row_mask.sum(dim=1) - 1
        return states[torch.arange(len(last), device=last.device), last]


def _learned(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[batch, length - 1]: the positions whose next token is learned (labelled)."""
    return batch["labels"][:, 1:] != IGNORE


def _held(learned: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The `learned` positions of `held_rows`, the rows the generation anchor holds."""
    return learned & batch["held_rows"][:, None]


def _chunks(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Split rows, given longest first, into consecutive runs whose rows × longest length fit
    `budget` (a row longer than the budget runs alone); the runs keep the given order."""
    chunks: list[list[int]] = []
    for row in order:
        if chunks and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= budget:
            chunks[-1].append(row)
        else:
            chunks.append([row])
    return chunks
