"""`ServerSettings`: what `onegen serve` serves and the limits it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from onegen_integrations.options import GenerationOptions

API_KEY_VARIABLE = "ONEGEN_API_KEY"
"""The environment variable `onegen serve` reads its API key from when --api-key is not given."""


@dataclass(frozen=True)
class ServerSettings:
    """Limits and defaults of one server; every count must be at least 1.

    A conversation's cache costs, per token, 2 × layers × KV heads × head size × bytes per value:
    SmolLM2-135M holds 46 KiB a token in fp32 on torch and 23 KiB in f16 on llama.cpp, so the
    default 65,536 cached tokens take at most 3 GiB or 1.5 GiB.
    """

    model_id: str = "default"
    """The name clients give as `model`; any other is refused with 404."""
    api_key: str | None = None
    """When set, every `/v1` request needs `Authorization: Bearer <api_key>`."""
    concurrency: int = 4
    """Requests answered at once; their forward passes interleave on the model."""
    queue: int = 64
    """Requests that may wait for a free slot; more are refused with 503."""
    max_conversations: int = 64
    """Conversations whose caches are kept between requests."""
    max_cached_tokens: int = 65536
    """Tokens all kept caches may hold together."""
    max_tokens: int = 1024
    """The highest `max_tokens` a request may ask for."""
    max_messages: int = 256
    """Most messages in one request."""
    max_request_bytes: int = 1 << 20
    """Largest request body."""
    max_embedding_inputs: int = 256
    """Most texts in one embeddings request."""
    generation: dict[str, Any] = field(default_factory=dict)
    """Every session's `GenerationOptions` defaults (e.g. `{"k": 2}`); requests override them."""

    def __post_init__(self) -> None:
        for setting in fields(self):
            value = getattr(self, setting.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ValueError(f"{setting.name} must be at least 1, not {value}")
        GenerationOptions().replace(**self.generation)
