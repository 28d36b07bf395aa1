"""The transformers backend: exact, trainable, on any device torch supports."""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Sequence

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel

from onegen_integrations.backends.base import Forward


class TorchBackend:
    """Forward passes of a transformers causal LM; one lock serialises callers."""

    name = "torch"

    def __init__(self, model: PreTrainedModel, *, pad_token_id: int | None = None) -> None:
        self.model = model.eval()
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0
        self.lock = threading.RLock()
        self._decoder = model.get_decoder()
        self._lm_head = model.get_output_embeddings()
        params = inspect.signature(self._decoder.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.model.device

    @property
    def dimension(self) -> int:
        """Length of a hidden state."""
        return int(self.model.config.hidden_size)

    @property
    def context_window(self) -> int:
        """Positions the model was trained for."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def eos_token_ids(self) -> set[int]:
        """The generation config's end-of-answer tokens."""
        configured = self.model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return {i for i in ids if i is not None}

    def fingerprint(self, signature: str) -> str:
        """A digest of `signature` (the config's embedding signature) and the weights.

        Every parameter contributes a strided sample of up to 4096 values, rounded to
        bfloat16 so the same checkpoint gives the same digest in fp32 or bf16. A LoRA merge or
        a fine-tune changes the whole matrix, so the sample sees it."""
        digest = hashlib.sha256(signature.encode())
        with torch.no_grad():
            for name, param in sorted(self.model.named_parameters()):
                flat = param.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)].to("cpu", torch.bfloat16)
                digest.update(f"{name}{tuple(param.shape)}".encode())
                digest.update(sample.view(torch.int16).numpy().tobytes())
        return digest.hexdigest()[:16]

    def new_cache(self) -> DynamicCache:
        """An empty KV cache for one conversation."""
        return DynamicCache(config=self.model.config)

    def forward(self, token_ids: Sequence[int], cache: DynamicCache, outputs: int = 1) -> Forward:
        """Feed `token_ids` over `cache`; the last `outputs` states (0: none), logits computed on demand."""
        inputs = torch.tensor([list(token_ids)], device=self.device)
        with self.lock, torch.inference_mode():
            out = self._decoder(input_ids=inputs, use_cache=True, **{self._cache_arg: cache})
        hidden = out.last_hidden_state[0]
        return Forward(hidden[len(hidden) - outputs :], lambda: self._logits(hidden[-1]))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._lm_head(hidden).float().cpu().clone()

    def last_states(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """One padded batch (right padding, so each sequence's last token sits at its length)."""
        width = max(len(ids) for ids in sequences)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(list(seq))
            mask[row, : len(seq)] = 1
        last = mask.sum(dim=1) - 1
        with self.lock, torch.inference_mode():
            out = self._decoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False)
            states = out.last_hidden_state[torch.arange(len(sequences)), last.to(self.device)]
        return states.float().cpu().numpy()
