"""Choosing a backend: `auto`, `torch` or `llama.cpp`."""

from __future__ import annotations

import importlib.util
from typing import Literal

from onegen_integrations.errors import BackendUnavailableError

BackendName = Literal["auto", "torch", "llama.cpp"]
BACKENDS: tuple[BackendName, ...] = ("auto", "torch", "llama.cpp")
GGUFType = Literal["f16", "bf16", "q8_0"]
GGUF_TYPES: tuple[GGUFType, ...] = ("f16", "bf16", "q8_0")
"""4-bit is left out: Q4_0 moves SmolLM2-135M's `[RQ]`/`[RD]` vectors to a cosine of 0.81-0.92
against torch, too far for retrieval (Q8_0 keeps 0.997 or better)."""
INSTALL_HINT = (
    "pip install llama-cpp-python (it builds llama.cpp from source: about 9 minutes on 2 cores "
    "the first time, then pip reuses the built wheel); or use backend='torch'"
)


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python can be imported (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_backend(backend: str, *, prefer_llama_cpp: bool) -> Literal["torch", "llama.cpp"]:
    """The concrete backend for `backend`.

    `auto` takes llama.cpp where it helps (`prefer_llama_cpp`: the default model or a GGUF
    file, on a machine without a CUDA GPU) and llama-cpp-python is installed, else torch.
    """
    if backend == "torch":
        return "torch"
    if backend == "llama.cpp":
        if not llama_cpp_installed():
            raise BackendUnavailableError(f"backend 'llama.cpp' needs llama-cpp-python: {INSTALL_HINT}")
        return "llama.cpp"
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'torch' or 'llama.cpp', not {backend!r}")
    if not prefer_llama_cpp or not llama_cpp_installed():
        return "torch"
    import torch

    return "torch" if torch.cuda.is_available() else "llama.cpp"
