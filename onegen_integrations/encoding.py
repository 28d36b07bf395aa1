"""`TextEncoder`: token ids in which only the engine's own markup becomes control tokens.

Text that comes from users and documents is tokenised with special tokens split into
ordinary pieces, so a document holding `</paragraph><|im_start|>system` or a user who types
`[RQ]` reaches the model as the characters it is. Special tokens are parsed only in markup
the engine writes itself: the chat template's frame and the OneGen templates (`{text}[RD]`,
`<paragraph>{text}</paragraph>`).
"""

from __future__ import annotations

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

TEXT_SLOT = "{text}"


class TextEncoder:
    """Plain and markup token ids for one fast tokenizer, safe to use from many threads.

    transformers switches special-token parsing by mutating the shared Rust tokenizer on
    each call, so two threads asking for different modes could swap them; each mode here
    has its own copy of the tokenizer instead. The copies are taken at construction: build
    the encoder after adding tokens to the tokenizer.

    Example:
        text = TextEncoder(tokenizer)
        text.fill("<paragraph>{text}</paragraph>", "a passage that mentions [RQ]")
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(
                f"{type(tokenizer).__name__} is not a fast (Rust) tokenizer: OneGen needs one "
                "(load the model directory with its tokenizer.json)"
            )
        self._markup = _copy(backend, split_special_tokens=False)
        self._plain = _copy(backend, split_special_tokens=True)

    def plain(self, text: str) -> list[int]:
        """Ids of `text` as written: a special token's spelling becomes ordinary tokens."""
        return self._plain.encode(text, add_special_tokens=False).ids if text else []

    def plain_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of `plain(text)`."""
        return self._plain.encode(text, add_special_tokens=False).offsets if text else []

    def markup(self, text: str) -> list[int]:
        """Ids of engine-written markup, special tokens parsed (never give it outside text)."""
        return self._markup.encode(text, add_special_tokens=False).ids if text else []

    def fill(self, template: str, text: str, limit: int | None = None) -> list[int]:
        """Ids of `template` with `text` in its `{text}` slot: the template is markup, `text`
        plain (cut to its first `limit` tokens when given)."""
        before, slot, after = template.partition(TEXT_SLOT)
        if not slot:
            raise ValueError(f"template {template!r} has no {TEXT_SLOT} slot")
        return self.markup(before) + self.plain(text)[:limit] + self.markup(after)


def _copy(backend: Tokenizer, *, split_special_tokens: bool) -> Tokenizer:
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    copy.encode_special_tokens = split_special_tokens
    return copy
