"""Token pieces of a dialogue in the model's chat template, appended turn by turn.

The engine never re-tokenises what is already in its cache, so a dialogue is built from
pieces: the system preamble, then per turn the user message (with the assistant's opening)
and, after the answer, whatever the template puts after an assistant message. Training
builds its sequences from the same pieces, so what the model learns is what it will see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from onegen_integrations.errors import OneGenError

Message = dict[str, Any]
_SENTINEL = "\x00answer\x00"


class ChatFormat:
    """Renders dialogue pieces with a tokenizer's chat template.

    Args:
        tokenizer: a tokenizer with a chat template.
        system_prompt: the system message opening every dialogue (None or "" for none).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None) -> None:
        if not tokenizer.chat_template:
            raise OneGenError("the tokenizer has no chat template; set tokenizer.chat_template")
        self.tokenizer = tokenizer
        self.system: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        closed = self._render(self.system + [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}])
        self._assistant_close = closed.split(_SENTINEL, 1)[1]
        self.eos_text = tokenizer.eos_token or ""

    def preamble(self) -> list[int]:
        """Tokens before the first user message (the system message), possibly none."""
        return self.tokenize(self._render(self.system) if self.system else "")

    def user_turn(self, history: Sequence[Message], message: str) -> list[int]:
        """Tokens that follow a closed `history` for a new user `message`, up to where the
        assistant starts answering. `history` holds the earlier user/assistant messages."""
        before = self._render(self.system + list(history)) if self.system or history else ""
        after = self._render(
            self.system + list(history) + [{"role": "user", "content": message}], generation_prompt=True
        )
        if not after.startswith(before):
            raise OneGenError(
                "the chat template renders earlier turns differently once a turn is added, "
                "so a dialogue cannot be extended in place; use a template that only appends"
            )
        return self.tokenize(after[len(before) :])

    def assistant_close(self, ended_with_eos: bool) -> list[int]:
        """Tokens the template puts after an answer; the EOS already generated is not repeated."""
        text = self._assistant_close
        if ended_with_eos and self.eos_text and text.startswith(self.eos_text):
            text = text[len(self.eos_text) :]
        return self.tokenize(text)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a piece of text, with no BOS added."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _render(self, messages: list[Message], generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
