"""The contract between `OneGenModel` and a backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch


class Forward:
    """What one forward call over a cache gives back.

    `states` are the last fed positions' hidden states (last layer, after the final norm, not
    normalised), shape `(n, dimension)`; `logits()` is the next-token distribution after the
    last one (float32, a fresh copy that is safe to edit).
    """

    def __init__(self, states: torch.Tensor, logits: Callable[[], torch.Tensor]) -> None:
        self.states = states
        self._logits = logits

    def logits(self) -> torch.Tensor:
        """Next-token logits after the last fed position."""
        return self._logits()


class Backend(Protocol):
    """Runs forward passes for one model; safe to call from many threads."""

    name: str
    """`torch` or `llama.cpp`."""

    @property
    def dimension(self) -> int:
        """Length of a hidden state."""
        ...

    @property
    def context_window(self) -> int:
        """Most positions one sequence may hold."""
        ...

    @property
    def eos_token_ids(self) -> set[int]:
        """Tokens that end an answer."""
        ...

    def fingerprint(self, signature: str) -> str:
        """A digest of the weights and `signature` (equal for a model and its GGUF export)."""
        ...

    def new_cache(self) -> Any:
        """An empty KV cache for one conversation."""
        ...

    def forward(self, token_ids: Sequence[int], cache: Any, outputs: int) -> Forward:
        """Feed `token_ids` over `cache`, extending it; the last `outputs` positions' states."""
        ...

    def last_states(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Each sequence's last hidden state, fed from scratch: `(len(sequences), dimension)`."""
        ...
