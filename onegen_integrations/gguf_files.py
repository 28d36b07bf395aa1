"""Reading OneGen GGUF files, and the cache of GGUF exports in `ONEGEN_HOME`."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from onegen_integrations.config import OneGenConfig
from onegen_integrations.default_model import (
    BASE_MODEL_NAME,
    DEFAULT_MODEL_NAME,
    SHIPPED_MODEL_DIR,
    gguf_path,
    onegen_home,
)
from onegen_integrations.errors import InvalidGGUFError, ModelNotFoundError
from onegen_integrations.gguf_export import CONFIG_KEY, EOS_KEY, FILE_KEY_PREFIX, FINGERPRINT_KEY, GGUFType
from onegen_integrations.tokens import missing_tokens

logger = logging.getLogger(__name__)

def default_gguf_type() -> GGUFType:
    """The export type for models exported on first use: bf16 where the CPU multiplies bf16 in
    hardware (x86 AVX512_BF16 or AMX-BF16), where it reads text about 1.5× faster than f16; f16
    elsewhere. Both retrieve within half a point of torch on the held-out evaluation, where q8_0
    loses 1.3 points of follow-up Recall@1 (docs/backends.md)."""
    try:
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "f16"
    return "bf16" if re.search(r"\b(avx512_bf16|amx_bf16)\b", cpu) else "f16"


@dataclass(frozen=True)
class OneGenGGUF:
    """What the runtime needs from a OneGen GGUF besides its weights."""

    config: OneGenConfig
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str
    eos_token_ids: frozenset[int]
    context_length: int
    dimension: int


def read_onegen_gguf(path: str | Path) -> OneGenGGUF:
    """Check that `path` is a complete OneGen GGUF and read its metadata and tokenizer.

    Raises `ModelNotFoundError` for a missing file and `InvalidGGUFError` for a file that is not
    GGUF, is truncated, or lacks the OneGen metadata and tokens (the message says what to do).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"no GGUF file at {str(path)!r}: export one with `onegen export-gguf MODEL --out FILE`")
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise InvalidGGUFError(f"{path} is not a GGUF file: export the model with `onegen export-gguf`")
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                fields, end = _read_header(data)
        except (struct.error, KeyError, ValueError, UnicodeDecodeError) as error:
            raise InvalidGGUFError(f"{path} is truncated or corrupt ({error}): export it again") from error
    if end > size:
        raise InvalidGGUFError(f"{path} is truncated ({size} bytes of {end}): export it again")
    if CONFIG_KEY not in fields:
        raise InvalidGGUFError(
            f"{path} is a GGUF without OneGen metadata (no {CONFIG_KEY}): a plain LLM cannot retrieve; "
            "export a OneGen model with `onegen export-gguf MODEL --out FILE`"
        )
    config = OneGenConfig.model_validate_json(fields[CONFIG_KEY])
    tokenizer = _tokenizer(fields)
    missing = missing_tokens(tokenizer, config.tokens)
    if missing:
        raise InvalidGGUFError(f"{path} lacks the OneGen tokens {', '.join(missing)}: export it again")
    arch = fields["general.architecture"]
    return OneGenGGUF(
        config=config,
        tokenizer=tokenizer,
        fingerprint=fields[FINGERPRINT_KEY],
        eos_token_ids=frozenset(json.loads(fields.get(EOS_KEY, "[]"))),
        context_length=int(fields[f"{arch}.context_length"]),
        dimension=int(fields[f"{arch}.embedding_length"]),
    )


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _read_header(data: mmap.mmap) -> tuple[dict[str, Any], int]:
    """The scalar and string metadata of a GGUF (arrays are skipped) and where its tensor data ends.

    A direct reading of the format (version 2 and 3): `gguf.GGUFReader` builds every token of
    the vocabulary as an object, which takes seconds on each load.
    """
    pos = 4

    def unpack(fmt: str) -> Any:
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        length = unpack("Q")
        pos += length
        if pos > len(data):
            raise ValueError("a string runs past the end of the file")
        return data[pos - length : pos].decode()

    def value(kind: int) -> Any:
        nonlocal pos
        if kind == _STRING:
            return string()
        if kind != _ARRAY:
            return unpack(_SCALARS[kind])
        item, count = unpack("I"), unpack("Q")
        if item in _SCALARS:
            pos += count * struct.calcsize(_SCALARS[item])
        else:
            for _ in range(count):
                value(item)
        return None

    if unpack("I") not in (2, 3):
        raise ValueError("unsupported GGUF version")
    tensors, count = unpack("Q"), unpack("Q")
    fields = {}
    for _ in range(count):
        key = string()
        fields[key] = value(unpack("I"))
    import gguf

    end = 0
    for _ in range(tensors):
        string()
        dims = [unpack("Q") for _ in range(unpack("I"))]
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(unpack("I"))]
        end = max(end, unpack("Q") + math.prod(dims) // block * size)
    alignment = fields.get("general.alignment") or 32
    return fields, -(-pos // alignment) * alignment + end


def _tokenizer(fields: dict) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as directory:
        for key, text in fields.items():
            if key.startswith(FILE_KEY_PREFIX):
                (Path(directory) / key[len(FILE_KEY_PREFIX) :]).write_text(text)
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def cached_export(name: str, gguf_type: GGUFType, *, add_tokens: bool = False) -> Path:
    """The GGUF export of model `name` (default, default-base or a directory) in `ONEGEN_HOME`.

    Exported on first use: loading on torch and writing takes a few seconds for the default,
    and the file is renamed into place when complete. The cache key covers the model's files
    (their sizes and modification times), so a retrained directory is exported again.
    """
    from onegen_integrations.model import OneGenModel

    target = onegen_home() / "models" / f"{_cache_stem(name)}-{gguf_type}.gguf"
    if target.is_file():
        return target
    logger.warning("exporting %s to %s for llama.cpp (once; a few seconds for a small model)", name, target)
    model = OneGenModel.load(name, backend="torch", add_tokens=add_tokens)
    return model.export_gguf(target, gguf_type, overwrite=True)


def _cache_stem(name: str) -> str:
    """A file name for model `name` that changes when its files change."""
    if name in (DEFAULT_MODEL_NAME, BASE_MODEL_NAME):  # small shipped files: hash their bytes
        digest = hashlib.sha256(f"{name}:{gguf_path().stat().st_size}".encode())
        for file in sorted(p for p in SHIPPED_MODEL_DIR.rglob("*") if p.is_file()):
            digest.update(file.read_bytes())
        return f"onegen-{name}-{digest.hexdigest()[:12]}"
    directory = Path(name).expanduser().resolve()
    if not directory.is_dir():
        raise ModelNotFoundError(
            f"no model at {name!r}: give a model directory, a .gguf file, or 'default'; nothing is downloaded"
        )
    digest = hashlib.sha256(str(directory).encode())
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{directory.name}-{digest.hexdigest()[:12]}"
