"""`OneGenModel`: one set of weights that generates, embeds documents and embeds queries."""

from __future__ import annotations

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
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from onegen_integrations.adapter import merge_lora_adapter
from onegen_integrations.backends.base import Backend, Forward
from onegen_integrations.backends.selection import BackendName, resolve_backend
from onegen_integrations.backends.torch_backend import TorchBackend
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
    ExportError,
    InvalidDocumentError,
    ModelNotFoundError,
    ModelNotOneGenError,
    ModelNotShareableError,
)
from onegen_integrations.gguf_export import GGUFType, export_gguf
from onegen_integrations.gguf_files import cached_export, default_gguf_type, read_onegen_gguf
from onegen_integrations.tokens import add_onegen_tokens, missing_tokens

if TYPE_CHECKING:
    from onegen_integrations.retrieval import Retriever
    from onegen_integrations.session import OneGenSession

logger = logging.getLogger(__name__)

TOKEN_ROWS_FILE = "onegen_tokens.safetensors"
_SHARED: dict[tuple[str, str], OneGenModel] = {}
_SHARED_LOCK = threading.Lock()


class UntrainedRetrievalWarning(UserWarning):
    """The model's OneGen tokens were added but never trained: retrieval will be weak."""


class OneGenModel:
    """A causal LM with OneGen tokens, shared by the engine, the store and every adapter.

    Load with `OneGenModel.load("default")` (the shipped OneGen SmolLM2-135M-Instruct), a OneGen
    model directory, a OneGen GGUF file, or a plain causal LM directory with `add_tokens=True`;
    or wrap an already-built transformers model (or a backend) and its tokenizer with
    `OneGenModel(model, tokenizer)`. The forward passes run on torch or llama.cpp (`backends`).

    Example:
        model = OneGenModel.load("default")
        vectors = model.embed_documents(["Ada Lovelace wrote the first program."])
    """

    def __init__(
        self,
        model: PreTrainedModel | Backend,
        tokenizer: PreTrainedTokenizerBase,
        config: OneGenConfig | None = None,
        *,
        add_tokens: bool = False,
        name: str = "custom",
    ) -> None:
        self.config = config or OneGenConfig()
        self.name = name
        missing = missing_tokens(tokenizer, self.config.tokens)
        if missing and (not add_tokens or not isinstance(model, PreTrainedModel)):
            raise ModelNotOneGenError(
                f"model {name!r} has no OneGen tokens ({', '.join(missing)} missing): "
                "train it with `python -m onegen_training` or load it with add_tokens=True "
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
        torch_model = model if isinstance(model, PreTrainedModel) else None
        self.hf_model = torch_model
        """The transformers model on the torch backend; None on llama.cpp."""
        self.backend: Backend = TorchBackend(model, pad_token_id=tokenizer.pad_token_id) if torch_model is not None else model
        """What runs the forward passes (`backends`)."""
        self.tokenizer = tokenizer
        self.text = TextEncoder(tokenizer)
        """Token ids of outside text (always plain) and of the engine's markup."""
        tokens = self.config.tokens
        ids = tokenizer.convert_tokens_to_ids([tokens.query, tokens.document, tokens.cont])
        self.query_token_id, self.document_token_id, self.cont_token_id = ids
        self.engine_token_ids = tokenizer.convert_tokens_to_ids(tokens.supplied_by_engine())

    @classmethod
    def load(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL_NAME,
        *,
        backend: BackendName = "auto",
        add_tokens: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        gguf_type: GGUFType | None = None,
        threads: int | None = None,
        sequences: int | None = None,
        cache_tokens: int | None = None,
    ) -> OneGenModel:
        """Load `"default"`, a OneGen model directory, a OneGen GGUF file, or (with `add_tokens`)
        a plain causal LM directory.

        `"default"` is the trained OneGen model shipped in this package (SmolLM2-135M-Instruct
        plus a LoRA adapter); `"default-base"` is the same base with untrained OneGen tokens.
        Nothing is downloaded: a path must exist on disk.

        `backend`: `torch` runs the transformers weights (`device` defaults to CUDA when
        available, else CPU; `dtype` to bfloat16 on CUDA and float32 on CPU). `llama.cpp` runs a
        GGUF through llama-cpp-python; a model directory (or the default) is exported once to a
        `gguf_type` GGUF cached in `ONEGEN_HOME` (default: bf16 on CPUs with bf16 arithmetic,
        else f16). `auto` takes llama.cpp for the default and for
        GGUF files when llama-cpp-python is installed and no GPU is, else torch; a directory
        loads on torch (training and evaluation of new checkpoints stay exact). `threads` sets
        llama.cpp's CPU threads (default: every core this process may use); `sequences` how many
        sessions keep their caches at once (default 32) and `cache_tokens` how many positions
        their shared KV buffer holds (default: the context window). On torch each session holds
        its own cache and these three are ignored.
        """
        name = str(name_or_path)
        is_gguf = name.endswith(".gguf")
        chosen = resolve_backend(backend, prefer_llama_cpp=is_gguf or name == DEFAULT_MODEL_NAME)
        if is_gguf and chosen != "llama.cpp":
            raise ModelNotFoundError(f"{name} is a GGUF file: load it with backend='llama.cpp' (or 'auto')")
        if chosen == "llama.cpp":
            if is_gguf:
                path = Path(name).expanduser()
            else:
                path = cached_export(name, gguf_type or default_gguf_type(), add_tokens=add_tokens)
            return cls._from_gguf(path, name=name, threads=threads, sequences=sequences, cache_tokens=cache_tokens)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        if name == BASE_MODEL_NAME:
            model, tokenizer = _load_transformers(default_model_dir(), device, dtype)
            return cls(model, tokenizer, add_tokens=True, name=BASE_MODEL_NAME)
        path = SHIPPED_MODEL_DIR if name == DEFAULT_MODEL_NAME else Path(name_or_path).expanduser()
        if not (path / "config.json").is_file() and not (path / CONFIG_NAME).is_file():
            raise ModelNotFoundError(
                f"no model at {str(name_or_path)!r}: give a directory holding config.json "
                f"(and {CONFIG_NAME} for a OneGen model), a .gguf file, or 'default'; nothing is downloaded"
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
    def _from_gguf(
        cls, path: Path, *, name: str, threads: int | None, sequences: int | None, cache_tokens: int | None
    ) -> OneGenModel:
        from onegen_integrations.backends.llama_cpp_backend import LlamaCppBackend

        contents = read_onegen_gguf(path)
        backend = LlamaCppBackend(path, contents, threads=threads, sequences=sequences, cache_tokens=cache_tokens)
        return cls(backend, contents.tokenizer, contents.config, name=name)

    @classmethod
    def shared(cls, name_or_path: str | Path = DEFAULT_MODEL_NAME, backend: BackendName = "auto") -> OneGenModel:
        """`load(name_or_path, backend=backend)` once per process; every caller gets the same object.

        Framework components built from a model name (a chat model and an embedding model,
        say) then run on one set of weights.
        """
        key = (str(name_or_path), backend)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls.load(key[0], backend=backend)
            return _SHARED[key]

    def save(self, directory: str | Path) -> Path:
        """Write full weights, tokenizer and `onegen.json` (a directory `load` accepts)."""
        if self.hf_model is None:
            raise ExportError("save writes transformers weights: load the model with backend='torch'")
        directory = Path(directory)
        self.hf_model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.config.model_copy(update={"adapter": None, "base_model": None}).write(directory)
        return directory

    def export_gguf(self, out: str | Path, gguf_type: GGUFType = "f16", *, overwrite: bool = False) -> Path:
        """Write this model as one GGUF file for the llama.cpp backend (see `gguf_export`)."""
        return export_gguf(self, out, gguf_type, overwrite=overwrite)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.backend.device if isinstance(self.backend, TorchBackend) else torch.device("cpu")

    @property
    def dimension(self) -> int:
        """Length of every embedding vector."""
        return self.backend.dimension

    @property
    def context_window(self) -> int:
        """Most tokens the model attends over (positions it was trained for)."""
        return self.backend.context_window

    @property
    def eos_token_ids(self) -> set[int]:
        """Tokens that end an answer."""
        ids = set(self.backend.eos_token_ids)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    @property
    def trained(self) -> bool:
        """Whether training taught the model to use its OneGen tokens."""
        return self.config.trained

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything that changes embeddings: weights, tokens and templates.

        A GGUF export carries its source's fingerprint, so a collection indexed on one backend
        is searched on the other (their vectors agree to a cosine of 0.99 or better).
        """
        return self.backend.fingerprint(self.config.embedding_signature())

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

    def new_cache(self) -> Any:
        """An empty KV cache for one conversation (the backend's kind)."""
        return self.backend.new_cache()

    def forward(self, token_ids: Sequence[int], cache: Any, *, outputs: int = 1) -> Forward:
        """Feed `token_ids` over `cache` (extending it): the last `outputs` positions' states
        (last layer, after the final norm, not normalised; `outputs=0` for none, which spares
        llama.cpp computing them) and the next-token logits."""
        return self.backend.forward(token_ids, cache, outputs)

    def session(self, retriever: Retriever | None = None, **options: Any) -> OneGenSession:
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
        with tqdm(total=len(encoded), disable=not show_progress, unit="doc", desc="embedding") as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                states = self.backend.last_states([encoded[i] for i in batch])
                vectors[batch] = states / np.linalg.norm(states, axis=1, keepdims=True).clip(min=1e-12)
                bar.update(len(batch))
        return vectors


def shareable_name(name: str | Path) -> str | None:
    """`name` as another process loads it with `OneGenModel.shared`: `"default"` or
    `"default-base"` as they are, an existing path made absolute; None for any other name
    (a model built in memory, whose weights no other process can load)."""
    name = str(name)
    if name in (DEFAULT_MODEL_NAME, BASE_MODEL_NAME):
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else None


def require_shareable_name(model: OneGenModel, receivers: str) -> str:
    """`model`'s `shareable_name`, or `ModelNotShareableError` for a model built in memory,
    saying how to make one that `receivers` (other processes) can load."""
    name = shareable_name(model.name)
    if name is None:
        raise ModelNotShareableError(
            f"{receivers} load the model by name, but model {model.name!r} was built in memory: save it "
            "(model.save(directory)) and give that directory, or load the model from 'default', a model "
            "directory or a .gguf file"
        )
    return name


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
