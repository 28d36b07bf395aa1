"""`OneGenModel`: one set of weights that generates, embeds documents and embeds queries."""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from onegen_integrations.adapter import merge_lora_adapter
from onegen_integrations.config import CONFIG_NAME, OneGenConfig
from onegen_integrations.default_model import (
    BASE_MODEL_NAME,
    DEFAULT_MODEL_NAME,
    SHIPPED_MODEL_DIR,
    default_model_dir,
)
from onegen_integrations.encoding import TextEncoder
from onegen_integrations.errors import (
    DocumentTooLongError,
    EmptyTextError,
    InvalidDocumentError,
    ModelNotFoundError,
    ModelNotOneGenError,
)
from onegen_integrations.tokens import add_onegen_tokens, missing_tokens

if TYPE_CHECKING:
    from onegen_integrations.retrieval import Retriever
    from onegen_integrations.session import OneGenSession

logger = logging.getLogger(__name__)

TOKEN_ROWS_FILE = "onegen_tokens.safetensors"
_SHARED: dict[str, "OneGenModel"] = {}
_SHARED_LOCK = threading.Lock()


class UntrainedRetrievalWarning(UserWarning):
    """The model's OneGen tokens were added but never trained: retrieval will be weak."""


class OneGenModel:
    """A causal LM with OneGen tokens, shared by the engine, the store and every adapter.

    Load with `OneGenModel.load("default")` (the shipped OneGen SmolLM2-135M-Instruct), a OneGen
    model directory, or a plain causal LM directory with `add_tokens=True`; or wrap an
    already-built transformers model and tokenizer with `OneGenModel(model, tokenizer)`.

    Example:
        model = OneGenModel.load("default")
        vectors = model.embed_documents(["Ada Lovelace wrote the first program."])
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: OneGenConfig | None = None,
        *,
        add_tokens: bool = False,
        name: str = "custom",
    ) -> None:
        self.config = config or OneGenConfig()
        self.name = name
        missing = missing_tokens(tokenizer, self.config.tokens)
        if missing and not add_tokens:
            raise ModelNotOneGenError(
                f"model {name!r} has no OneGen tokens ({', '.join(missing)} missing): "
                "train it with `python -m training` or load it with add_tokens=True "
                "(retrieval stays untrained until then)"
            )
        if missing:
            add_onegen_tokens(model, tokenizer, self.config.tokens)
        if missing or not self.config.trained:
            warnings.warn(
                f"model {name!r} has untrained OneGen tokens: generation works, retrieval "
                "quality needs training (see training/)",
                UntrainedRetrievalWarning,
                stacklevel=2,
            )
        self.hf_model = model.eval()
        self.tokenizer = tokenizer
        self.text = TextEncoder(tokenizer)
        """Token ids of outside text (always plain) and of the engine's markup."""
        self.lock = threading.RLock()
        """Held around every forward pass: callers on other threads wait their turn."""
        self._decoder = model.get_decoder()
        self._lm_head = model.get_output_embeddings()
        forward_params = inspect.signature(self._decoder.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_params else "past_key_values"
        tokens = self.config.tokens
        ids = tokenizer.convert_tokens_to_ids([tokens.query, tokens.document, tokens.cont])
        self.query_token_id, self.document_token_id, self.cont_token_id = ids
        self.engine_token_ids = tokenizer.convert_tokens_to_ids(tokens.supplied_by_engine())

    @classmethod
    def load(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL_NAME,
        *,
        add_tokens: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> "OneGenModel":
        """Load `"default"`, a OneGen model directory, or (with `add_tokens`) a plain causal LM.

        `"default"` is the trained OneGen model shipped in this package (SmolLM2-135M-Instruct
        plus a LoRA adapter); `"default-base"` is the same base with untrained OneGen tokens.
        Nothing is downloaded: a path must exist on disk. `device` defaults to CUDA when
        available, else CPU; `dtype` to bfloat16 on CUDA and float32 on CPU.
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        name = str(name_or_path)
        if name == BASE_MODEL_NAME:
            model, tokenizer = _load_transformers(default_model_dir(), device, dtype)
            return cls(model, tokenizer, add_tokens=True, name=BASE_MODEL_NAME)
        path = SHIPPED_MODEL_DIR if name == DEFAULT_MODEL_NAME else Path(name_or_path).expanduser()
        if not (path / "config.json").is_file() and not (path / CONFIG_NAME).is_file():
            raise ModelNotFoundError(
                f"no model at {str(name_or_path)!r}: give a directory holding config.json "
                f"(and {CONFIG_NAME} for a OneGen model), or 'default'; nothing is downloaded"
            )
        if not (path / CONFIG_NAME).is_file():
            model, tokenizer = _load_transformers(path, device, dtype)
            return cls(model, tokenizer, add_tokens=add_tokens, name=name)
        config = OneGenConfig.read(path)
        if config.adapter is None:
            model, tokenizer = _load_transformers(path, device, dtype)
            return cls(model, tokenizer, config, name=name)
        base = config.base_model or DEFAULT_MODEL_NAME
        base_dir = default_model_dir() if base == DEFAULT_MODEL_NAME else path / base
        model, tokenizer = _load_transformers(base_dir, device, dtype)
        add_onegen_tokens(model, tokenizer, config.tokens)
        if config.token_embeddings:
            _load_token_rows(model, tokenizer, config, path / config.token_embeddings)
        merge_lora_adapter(model, path / config.adapter)
        return cls(model, tokenizer, config, name=name)

    @classmethod
    def shared(cls, name_or_path: str | Path = DEFAULT_MODEL_NAME) -> "OneGenModel":
        """`load(name_or_path)` once per process; every caller gets the same object.

        Framework components built from a model name (a chat model and an embedding model,
        say) then run on one set of weights.
        """
        key = str(name_or_path)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls.load(key)
            return _SHARED[key]

    def save(self, directory: str | Path) -> Path:
        """Write full weights, tokenizer and `onegen.json` (a directory `load` accepts)."""
        directory = Path(directory)
        self.hf_model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.config.model_copy(update={"adapter": None, "base_model": None}).write(directory)
        return directory

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.hf_model.device

    @property
    def dimension(self) -> int:
        """Length of every embedding vector."""
        return int(self.hf_model.config.hidden_size)

    @property
    def context_window(self) -> int:
        """Most tokens the model attends over (positions it was trained for)."""
        return int(getattr(self.hf_model.config, "max_position_embeddings", 2048))

    @property
    def trained(self) -> bool:
        """Whether training taught the model to use its OneGen tokens."""
        return self.config.trained

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything that changes embeddings: weights, tokens and templates.

        Every parameter contributes a strided sample of up to 4096 values, rounded to
        bfloat16 so the same checkpoint gives the same fingerprint in fp32 or bf16. A LoRA
        merge or a fine-tune changes the whole matrix, so the sample sees it.
        """
        digest = hashlib.sha256(self.config.embedding_signature().encode())
        with torch.no_grad():
            for name, param in sorted(self.hf_model.named_parameters()):
                flat = param.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)].to("cpu", torch.bfloat16)
                digest.update(f"{name}{tuple(param.shape)}".encode())
                digest.update(sample.view(torch.int16).numpy().tobytes())
        return digest.hexdigest()[:16]

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` as plain text: no BOS, and a special token's spelling in it
        (`[RQ]`, `<|im_end|>`) stays ordinary text, never a control token."""
        return self.text.plain(text)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes."""
        return len(self.tokenize(text))

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 16,
        show_progress: bool = False,
        max_tokens: int | None = None,
    ) -> np.ndarray:
        """Unit vectors of `"{text}[RD]"` for each text, shape `(len(texts), dimension)`.

        Texts are sorted by length into batches padded to their longest member, so short
        documents never pay for long ones. Every text is checked before any is embedded.
        `max_tokens` (default: the context window) bounds a document; split longer ones
        with `TextSplitter`.
        """
        return self._embed(texts, self.config.document_template, batch_size, show_progress, max_tokens)

    def embed_query(self, text: str) -> np.ndarray:
        """Unit vector of `"{text}[RQ]"`: the model used as a plain query encoder."""
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        """Unit vectors of `"{text}[RQ]"` for several standalone queries."""
        return self._embed(texts, self.config.query_template, batch_size, False, None)

    def encode_texts(self, texts: Sequence[str], template: str, max_tokens: int | None = None) -> list[list[int]]:
        """Token ids of each text written into `template`, checking every text first.

        Raises `EmptyTextError` or `DocumentTooLongError` (over `max_tokens`, default the
        context window) naming the first bad text, before any work is done.
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not one string")
        limit = max_tokens or self.context_window
        encoded = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidDocumentError(f"text {i} is {type(text).__name__}, not a string: pass text")
            if not text.strip():
                raise EmptyTextError(f"text {i} is empty: remove it before embedding")
            ids = self.text.fill(template, text)
            if len(ids) > limit:
                raise DocumentTooLongError(
                    f"text {i} has {len(ids)} tokens, more than the {limit} the model embeds "
                    "at once: split it first (onegen_integrations.TextSplitter)"
                )
            encoded.append(ids)
        return encoded

    def new_cache(self) -> DynamicCache:
        """An empty KV cache for one conversation."""
        return DynamicCache(config=self.hf_model.config)

    def forward(self, token_ids: Sequence[int], cache: DynamicCache) -> torch.Tensor:
        """Feed `token_ids` over `cache` (extending it); return the last position's hidden state.

        The state is the last layer's, after the final norm, not normalised.
        """
        return self.forward_states(token_ids, cache)[-1]

    def forward_states(self, token_ids: Sequence[int], cache: DynamicCache) -> torch.Tensor:
        """Like `forward`, but the states of every fed position, shape `(len(token_ids), dimension)`."""
        inputs = torch.tensor([list(token_ids)], device=self.device)
        with self.lock, torch.inference_mode():
            out = self._decoder(input_ids=inputs, use_cache=True, **{self._cache_arg: cache})
        return out.last_hidden_state[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits for one hidden state (float32, safe to edit in place)."""
        with torch.no_grad():
            return self._lm_head(hidden).float().clone()

    def session(self, retriever: "Retriever | None" = None, **options: Any) -> "OneGenSession":
        """A new conversation on this model; see `OneGenSession` for the options."""
        from onegen_integrations.session import OneGenSession

        return OneGenSession(self, retriever, **options)

    def _embed(
        self,
        texts: Sequence[str],
        template: str,
        batch_size: int,
        show_progress: bool,
        max_tokens: int | None,
    ) -> np.ndarray:
        encoded = self.encode_texts(texts, template, max_tokens)
        vectors = np.zeros((len(encoded), self.dimension), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        with tqdm(total=len(encoded), disable=not show_progress, unit="doc", desc="embedding") as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                width = max(len(encoded[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, : len(encoded[i])] = 1
                last = mask.sum(dim=1) - 1
                with self.lock, torch.inference_mode():
                    out = self._decoder(
                        input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False
                    )
                    states = out.last_hidden_state[torch.arange(len(batch)), last.to(self.device)]
                    states = torch.nn.functional.normalize(states.float(), dim=-1)
                vectors[batch] = states.cpu().numpy()
                bar.update(len(batch))
        return vectors


def _load_transformers(
    path: Path, device: torch.device, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device), tokenizer


def _load_token_rows(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: OneGenConfig, path: Path
) -> None:
    """Overwrite the OneGen token rows with trained ones (`input`, and `output` if untied)."""
    rows = load_file(path)
    ids = tokenizer.convert_tokens_to_ids(config.tokens.all())
    with torch.no_grad():
        embed = model.get_input_embeddings().weight
        embed[ids] = rows["input"].to(embed.dtype).to(embed.device)
        output = model.get_output_embeddings()
        if "output" in rows and output is not None and output.weight.data_ptr() != embed.data_ptr():
            output.weight[ids] = rows["output"].to(output.weight.dtype).to(output.weight.device)
