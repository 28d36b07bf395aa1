"""Writing a OneGen model as one self-contained GGUF file for the llama.cpp backend.

The weights are written merged (LoRA folded in, trained OneGen token rows in the vocabulary),
because a GGUF LoRA adapter cannot add vocabulary rows. Besides the llama.cpp metadata the file
carries what the runtime needs to use it without the model directory: `onegen.json`, the
tokenizer files (tokenisation stays in the transformers tokenizer on both backends, so token ids
are identical) and the source model's fingerprint (a store indexed on one backend is searched on
the other).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from onegen_integrations.backends.selection import GGUF_TYPES, GGUFType
from onegen_integrations.errors import ExportError

if TYPE_CHECKING:
    from onegen_integrations.model import OneGenModel

CONFIG_KEY = "onegen.config"
FINGERPRINT_KEY = "onegen.fingerprint"
EOS_KEY = "onegen.eos_token_ids"
FILE_KEY_PREFIX = "onegen.file."
"""Followed by a tokenizer file's name (`tokenizer.json`, ...); the value is its text."""

_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def export_gguf(model: OneGenModel, out: str | Path, gguf_type: GGUFType = "f16", *, overwrite: bool = False) -> Path:
    """Write `model` (torch backend) to `out` as a GGUF of `gguf_type`; return the path.

    The file is written beside `out` and renamed into place, so an interrupted export never
    leaves a half-written model. Raises `ExportError` if `out` exists (unless `overwrite`),
    for an unknown type, or for an architecture other than Llama's.
    """
    import gguf

    out = Path(out).expanduser()
    if gguf_type not in GGUF_TYPES:
        raise ExportError(f"unknown GGUF type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists: choose another --out, or remove it first")
    if model.hf_model is None:
        raise ExportError("export needs the model's weights: load it with backend='torch'")
    config = model.hf_model.config
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if config.model_type != "llama" or rope.get("rope_type", "default") != "default":
        raise ExportError(
            f"GGUF export supports Llama-architecture models without rope scaling (SmolLM2, Llama); "
            f"this one is {config.model_type!r}: use the torch backend for it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(staging, "llama")
        _write_metadata(writer, model, gguf_type)
        for name, tensor in _llama_tensors(model):
            _add_tensor(writer, name, tensor, gguf_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(staging, 0o644)
        os.replace(staging, out)
    finally:
        Path(staging).unlink(missing_ok=True)
    return out


def _write_metadata(writer, model: OneGenModel, gguf_type: GGUFType) -> None:
    import gguf

    config = model.hf_model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_name(model.name)
    writer.add_context_length(model.context_window)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(
        {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
         "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    )
    rows = model.hf_model.get_input_embeddings().weight.shape[0]
    writer.add_vocab_size(rows)
    tokens, types, merges = _vocabulary(model, rows)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    tokenizer = model.tokenizer
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    onegen = model.config.model_copy(update={"adapter": None, "base_model": None, "token_embeddings": None})
    writer.add_string(CONFIG_KEY, onegen.model_dump_json())
    writer.add_string(FINGERPRINT_KEY, model.fingerprint)
    writer.add_string(EOS_KEY, json.dumps(sorted(model.eos_token_ids)))
    with tempfile.TemporaryDirectory() as directory:
        for path in sorted(Path(p) for p in tokenizer.save_pretrained(directory)):
            if path.is_file():
                writer.add_string(FILE_KEY_PREFIX + path.name, path.read_text())


def _vocabulary(model: OneGenModel, rows: int) -> tuple[list[str], list[int], list[str]]:
    """Token strings by id, their GGUF token types, and the BPE merges."""
    import gguf

    tokenizer = model.tokenizer
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE":
        raise ExportError(f"GGUF export supports BPE tokenizers; this one is {state['model']['type']}")
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(rows):
        if i in by_id:
            tokens.append(by_id[i])
            special = i in added and added[i].special
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED if i in added
                         else gguf.TokenType.NORMAL)
        else:  # embedding rows beyond the tokenizer (padding to a multiple)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    return tokens, types, merges


def _llama_tensors(model: OneGenModel) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every weight, q and k rows reordered for llama.cpp's rope."""
    config = model.hf_model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    params = dict(model.hf_model.named_parameters())
    tied = model.hf_model.get_output_embeddings().weight.data_ptr() == model.hf_model.get_input_embeddings().weight.data_ptr()
    yield "token_embd.weight", _numpy(params["model.embed_tokens.weight"])
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in _LAYER_TENSORS.items():
            weight = _numpy(params[f"model.layers.{layer}.{hf_name}.weight"])
            if gguf_name == "attn_q":
                weight = _rope_order(weight, heads)
            elif gguf_name == "attn_k":
                weight = _rope_order(weight, kv_heads)
            yield f"blk.{layer}.{gguf_name}.weight", weight
    yield "output_norm.weight", _numpy(params["model.norm.weight"])
    if not tied:
        yield "output.weight", _numpy(params["lm_head.weight"])


def _rope_order(weight: np.ndarray, heads: int) -> np.ndarray:
    """transformers rotates the two halves of each head; llama.cpp rotates interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _numpy(param: torch.Tensor) -> np.ndarray:
    return param.detach().to("cpu", torch.float32).numpy()


def _add_tensor(writer, name: str, tensor: np.ndarray, gguf_type: GGUFType) -> None:
    """Norms stay float32; matrices take the export type (f16 where a row does not fit the blocks)."""
    import gguf

    if tensor.ndim == 1:
        writer.add_tensor(name, tensor.astype(np.float32))
        return
    quant = {"bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}.get(gguf_type)
    if quant is None or tensor.shape[-1] % gguf.GGML_QUANT_SIZES[quant][0]:
        writer.add_tensor(name, tensor.astype(np.float16))
        return
    writer.add_tensor(name, gguf.quants.quantize(tensor, quant), raw_dtype=quant)
