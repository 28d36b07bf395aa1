"""Decode speed: the OneGen engine against transformers `generate` (and llama.cpp when installed).

Per-token time is `(t(n tokens) - t(1 token)) / (n - 1)`, so prompt processing cancels out.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from benchmarks.timing import interleaved_medians, ratio
from benchmarks.workload import QUESTION, no_eos
from onegen_integrations.default_model import DEFAULT_MODEL_NAME, gguf_path
from onegen_integrations.model import OneGenModel


def measure_decode(model: OneGenModel, *, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Tokens/s of the engine and of `generate` on the same weights, prompt and token count."""
    ban = no_eos(model)
    prompt = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]

    def engine(n: int) -> None:
        model.session(None, logits_processor=ban).ask(QUESTION, max_new_tokens=n)

    def hf_generate(n: int) -> None:
        with torch.inference_mode():
            model.hf_model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    medians = interleaved_medians(
        {
            "engine": lambda: engine(new_tokens),
            "engine_1": lambda: engine(1),
            "hf_generate": lambda: hf_generate(new_tokens),
            "hf_generate_1": lambda: hf_generate(1),
        },
        repeats,
    )
    per_token = {name: (medians[name] - medians[f"{name}_1"]) / (new_tokens - 1) for name in ("engine", "hf_generate")}
    result: dict[str, Any] = {
        "new_tokens": new_tokens,
        "turn_seconds": {name: round(t, 4) for name, t in medians.items()},
        "tokens_per_s": {name: round(1 / t, 2) for name, t in per_token.items()},
        "engine_vs_hf_generate_time_per_token": ratio(per_token["engine"], per_token["hf_generate"]),
        "llama_cpp": llama_cpp_decode(model, new_tokens, repeats),
    }
    return result


def llama_cpp_decode(model: OneGenModel, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Tokens/s of llama.cpp on the default model's GGUF file, or why it was skipped."""
    if importlib.util.find_spec("llama_cpp") is None:
        return {"skipped": "llama-cpp-python is not installed"}
    if model.name != DEFAULT_MODEL_NAME:
        return {"skipped": "llama.cpp runs only the default model's GGUF file"}
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path()), n_threads=torch.get_num_threads(), verbose=False)
    messages = [{"role": "user", "content": QUESTION}]
    ban = {llm.token_eos(): -1e9}

    def chat(n: int) -> None:
        llm.create_chat_completion(messages, max_tokens=n, temperature=0.0, logit_bias=ban)

    medians = interleaved_medians({"n": lambda: chat(new_tokens), "one": lambda: chat(1)}, repeats)
    return {"tokens_per_s": round((new_tokens - 1) / (medians["n"] - medians["one"]), 2), "weights": "Q4_1 GGUF"}
