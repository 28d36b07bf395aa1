"""`TextSplitter`: cut long documents into overlapping chunks that fit the model's token budget."""

from __future__ import annotations

import re
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from onegen_integrations.encoding import TextEncoder
from onegen_integrations.model import OneGenModel

# A paragraph ends at a blank line; inside one, a sentence ends after . ! or ? followed by
# whitespace, and a single line break ends one too (headings, list items, table rows).
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


@dataclass(frozen=True)
class _Piece:
    """A span of the text that chunks are built from; `opens_paragraph` marks a preferred cut."""

    start: int
    end: int
    opens_paragraph: bool


class TextSplitter:
    """Split text into chunks of at most `chunk_tokens` tokens, each overlapping the last.

    Chunks are packed greedily from whole sentences, and a chunk ends at a paragraph break
    instead when one lies in its second half. The next chunk repeats the previous chunk's
    trailing sentences, up to `overlap_tokens`. A sentence longer than a chunk is cut into
    token windows. Chunks are exact slices of the input, counted with the model's tokenizer
    as plain text (the way documents are embedded).

    Example:
        splitter = TextSplitter(model, chunk_tokens=256, overlap_tokens=32)
        store.add(splitter.split(long_text))
    """

    def __init__(
        self,
        tokenizer_or_model: OneGenModel | PreTrainedTokenizerBase,
        chunk_tokens: int = 256,
        overlap_tokens: int = 32,
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError(
                f"overlap_tokens must be from 0 to chunk_tokens - 1 ({chunk_tokens - 1}), got {overlap_tokens}"
            )
        model_text = getattr(tokenizer_or_model, "text", None)
        self.text = model_text if isinstance(model_text, TextEncoder) else TextEncoder(tokenizer_or_model)
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes as plain text, with no special tokens added."""
        return len(self.text.plain(text))

    def split(self, text: str) -> list[str]:
        """The chunks of `text`, in order; `[]` for empty or blank text."""
        pieces = self._pieces(text)
        chunks: list[str] = []
        start = end = 0
        while end < len(pieces):
            end = self._pack(text, pieces, start, first_new=end)
            chunks.append(text[pieces[start].start : pieces[end - 1].end])
            if end < len(pieces):
                start = self._overlap_start(text, pieces, start, end)
        return chunks

    def _pieces(self, text: str) -> list[_Piece]:
        """Sentences of every paragraph; those longer than a chunk become token windows."""
        pieces: list[_Piece] = []
        for paragraph in _spans(text, _PARAGRAPH_BREAK, 0, len(text)):
            for n, (start, end) in enumerate(_spans(text, _SENTENCE_BREAK, *paragraph)):
                windows = [(start, end)]
                if self.count_tokens(text[start:end]) > self.chunk_tokens:
                    windows = self._windows(text, start, end)
                pieces += [_Piece(s, e, n == 0 and i == 0) for i, (s, e) in enumerate(windows)]
        return pieces

    def _windows(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Cut `text[start:end]` into spans of whole tokens that each fit a chunk.

        Windows are `overlap_tokens` long (when there is an overlap) so that the next chunk
        can repeat the last one; otherwise a full chunk long. A window whose text re-tokenises
        to more tokens than that (merges differ at its edges) is shortened until it fits.
        """
        size = self.overlap_tokens or self.chunk_tokens
        offsets = self.text.plain_offsets(text[start:end])
        windows = []
        first = 0
        while first < len(offsets):
            last = min(first + size, len(offsets))
            while True:
                window_start = start + offsets[first][0] if first else start
                window_end = start + offsets[last - 1][1] if last < len(offsets) else end
                # Byte-level tokens carry their leading space: keep it out of the window.
                while window_start < window_end and text[window_start].isspace():
                    window_start += 1
                if last - first == 1 or self.count_tokens(text[window_start:window_end]) <= size:
                    break
                last -= 1
            if window_start < window_end:
                windows.append((window_start, window_end))
            first = last
        return windows

    def _pack(self, text: str, pieces: list[_Piece], start: int, first_new: int) -> int:
        """End (exclusive) of the chunk that begins at `pieces[start]`.

        Adds pieces while the chunk fits; then moves the end back to a paragraph break in
        the chunk's second half, if there is one, so chunks end on paragraphs when they can.
        The chunk always keeps `pieces[first_new]`, the first piece no earlier chunk holds.
        """
        end = first_new + 1
        while end < len(pieces) and self._fits(text, pieces[start].start, pieces[end].end):
            end += 1
        if end == len(pieces) or pieces[end].opens_paragraph:
            return end
        half = self.chunk_tokens // 2
        for cut in range(end - 1, first_new, -1):
            if pieces[cut].opens_paragraph:
                if self.count_tokens(text[pieces[start].start : pieces[cut - 1].end]) >= half:
                    return cut
                break
        return end

    def _overlap_start(self, text: str, pieces: list[_Piece], start: int, end: int) -> int:
        """Where the next chunk begins: the trailing pieces of this one that fit the overlap
        and still leave room for the next piece (never before `start + 1`, so splitting ends)."""
        begin = end
        while (
            begin - 1 > start
            and self.count_tokens(text[pieces[begin - 1].start : pieces[end - 1].end]) <= self.overlap_tokens
            and self._fits(text, pieces[begin - 1].start, pieces[end].end)
        ):
            begin -= 1
        return begin

    def _fits(self, text: str, start: int, end: int) -> bool:
        return self.count_tokens(text[start:end]) <= self.chunk_tokens


def _spans(text: str, separator: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    """Non-blank spans of `text[start:end]` between matches of `separator`, stripped."""
    spans = []
    position = start
    for match in separator.finditer(text, start, end):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, end))
    stripped = []
    for s, e in spans:
        segment = text[s:e]
        left = len(segment) - len(segment.lstrip())
        right = len(segment.rstrip())
        if right > left:
            stripped.append((s + left, s + right))
    return stripped
