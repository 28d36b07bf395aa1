"""Decode speed: the OneGen engine against the raw generation loop of its own backend.

On torch the raw loop is transformers `generate`; on llama.cpp it is llama-cpp-python's
`Llama.create_completion` on the very GGUF file the engine runs, the ceiling of that backend.
Per-token time is `(t(n tokens) - t(1 token)) / (n - 1)`, so prompt processing cancels out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.timing import interleaved_medians, ratio
from benchmarks.workload import QUESTION, no_eos
from onegen_integrations.model import OneGenModel


def measure_decode(model: OneGenModel, *, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Tokens/s of the engine and of the backend's raw loop on the same weights, prompt and token count."""
    ban = no_eos(model)
    prompt = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_dict=True
    )["input_ids"]

    def engine(n: int) -> None:
        model.session(None, logits_processor=ban).ask(QUESTION, max_new_tokens=n)

    raw, raw_name = raw_generation(model, list(prompt))
    medians = interleaved_medians(
        {
            "engine": lambda: engine(new_tokens),
            "engine_1": lambda: engine(1),
            "raw": lambda: raw(new_tokens),
            "raw_1": lambda: raw(1),
        },
        repeats,
    )
    per_token = {name: (medians[name] - medians[f"{name}_1"]) / (new_tokens - 1) for name in ("engine", "raw")}
    return {
        "new_tokens": new_tokens,
        "raw": raw_name,
        "turn_seconds": {name: round(t, 4) for name, t in medians.items()},
        "tokens_per_s": {name: round(1 / t, 2) for name, t in per_token.items()},
        "engine_vs_raw_time_per_token": ratio(per_token["engine"], per_token["raw"]),
    }


def raw_generation(model: OneGenModel, prompt: list[int]) -> tuple[Callable[[int], object], str]:
    """A function generating n greedy tokens after `prompt` without the engine, and its name."""
    eos = model.tokenizer.eos_token_id
    if model.hf_model is not None:
        ids = torch.tensor([prompt])

        def generate(n: int) -> None:
            with torch.inference_mode():
                model.hf_model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)

        return generate, "transformers generate"
    from llama_cpp import Llama

    llm = Llama(model_path=str(model.backend.path), n_ctx=2048, n_threads=model.backend.threads, verbose=False)

    def complete(n: int) -> None:
        llm.reset()  # no prompt reuse between calls: the engine starts each turn from scratch too
        llm.create_completion(prompt, max_tokens=n, temperature=0.0, logit_bias={eos: -1e9})

    return complete, "llama-cpp-python create_completion"
