"""Token pieces of a dialogue in the model's chat template, appended turn by turn.

The engine never re-tokenises what is already in its cache, so a dialogue is built from
pieces: the system preamble, then per turn the user message (with the assistant's opening)
and, after the answer, whatever the template puts after an assistant message. Training
builds its sequences from the same pieces, so what the model learns is what it will see.

Message text is tokenised as plain text (`TextEncoder.plain`): only the template's own
frame can hold control tokens, so a message cannot close its turn or open a system one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from onegen_integrations.encoding import TextEncoder
from onegen_integrations.errors import OneGenError

Message = dict[str, Any]
_SENTINEL = "\x00answer\x00"
_Piece = tuple[str, bool]
"""A stretch of rendered dialogue and whether it is message text (plain) or template frame."""


class ChatFormat:
    """Renders dialogue pieces with a tokenizer's chat template.

    Args:
        tokenizer: a tokenizer with a chat template.
        system_prompt: the system message opening every dialogue (None or "" for none).
        text: the tokenizer's `TextEncoder`, when one is built already (a model's `text`).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None, text: TextEncoder | None = None
    ) -> None:
        if not tokenizer.chat_template:
            raise OneGenError("the tokenizer has no chat template; set tokenizer.chat_template")
        self.tokenizer = tokenizer
        self.text = text or TextEncoder(tokenizer)
        """Plain and markup token ids (message text is always plain)."""
        self.system: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        closed = self._render([*self.system, {"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}])
        self._assistant_close = closed.split(_SENTINEL, 1)[1]
        self.eos_text = tokenizer.eos_token or ""

    def preamble(self) -> list[int]:
        """Tokens before the first user message (the system message), possibly none."""
        return self._encode(self.system, generation_prompt=False, skip=0) if self.system else []

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
        return self._encode([*self.system, *history, {"role": "user", "content": message}], True, len(before))

    def assistant_close(self, ended_with_eos: bool) -> list[int]:
        """Tokens the template puts after an answer; the EOS already generated is not repeated."""
        text = self._assistant_close
        if ended_with_eos and self.eos_text and text.startswith(self.eos_text):
            text = text[len(self.eos_text) :]
        return self.text.markup(text)

    def _encode(self, messages: list[Message], generation_prompt: bool, skip: int) -> list[int]:
        """Ids of the rendered `messages` from character `skip` on: frame as markup, text plain."""
        ids: list[int] = []
        for text, is_message in self._pieces(messages, generation_prompt):
            part, skip = text[skip:], max(0, skip - len(text))
            ids += self.text.plain(part) if is_message else self.text.markup(part)
        return ids

    def _pieces(self, messages: list[Message], generation_prompt: bool) -> list[_Piece]:
        """The rendered dialogue cut into template frame and message text.

        Each message is rendered as a unique mark to find the frame around it. A template
        that trims message text is matched with trimmed text; one that changes it otherwise
        cannot be told apart from injected markup, so it is refused.
        """
        marks = [f"\x00{i}\x00" for i in range(len(messages))]
        rest = self._render([{**m, "content": mark} for m, mark in zip(messages, marks)], generation_prompt)
        frames = []
        for mark in marks:
            frame, found, rest = rest.partition(mark)
            if not found:
                raise OneGenError("the chat template leaves out a message's text; use a template that renders every message")
            frames.append(frame)
        rendered = self._render(messages, generation_prompt)
        for shape in (str, str.strip):
            texts = [shape(m["content"]) for m in messages]
            if "".join(f + t for f, t in zip(frames, texts)) + rest == rendered:
                return [piece for f, t in zip(frames, texts) for piece in ((f, False), (t, True))] + [(rest, False)]
        raise OneGenError(
            "the chat template changes message text beyond trimming it, so message text cannot be kept "
            "apart from template markup; use a template that inserts each message as written"
        )

    def _render(self, messages: list[Message], generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
