"""TextSplitter: chunks fit the token budget, cover the text, overlap, and prefer paragraphs."""

from __future__ import annotations

import itertools
import random

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from onegen_integrations.default_model import default_model_dir
from onegen_integrations.model import OneGenModel
from onegen_integrations.splitter import TextSplitter

WORDS = ["the", "river", "carries", "silt", "past", "old", "mills", "where", "engineers", "measured", "flow", "rates", "every", "spring"]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(default_model_dir())


def sentences(count: int, seed: int, words: tuple[int, int] = (3, 12)) -> list[str]:
    """Distinct sentences (each is numbered) of random lengths."""
    rng = random.Random(seed)
    return [f"Gauge {seed}-{i} saw " + " ".join(rng.choices(WORDS, k=rng.randint(*words))) + "." for i in range(count)]


def document(seed: int = 0) -> str:
    """Six paragraphs of varied sentences, one holding a sentence far longer than a chunk."""
    paragraphs = [" ".join(sentences(8, seed + i)) for i in range(6)]
    paragraphs[3] += " " + " ".join(f"overflow{i}" for i in range(300)) + "."
    return "\n\n".join(paragraphs)


def spans(text: str, chunks: list[str]) -> list[tuple[int, int]]:
    """Where each chunk sits in `text` (chunks are slices, found left to right)."""
    found, position = [], 0
    for chunk in chunks:
        start = text.index(chunk, position)
        found.append((start, start + len(chunk)))
        position = start + 1
    return found


@pytest.mark.parametrize(("chunk", "overlap"), [(64, 16), (40, 0), (128, 32), (16, 15)])
def test_every_chunk_fits_the_token_budget(tokenizer: PreTrainedTokenizerBase, chunk: int, overlap: int) -> None:
    splitter = TextSplitter(tokenizer, chunk_tokens=chunk, overlap_tokens=overlap)

    chunks = splitter.split(document())

    assert len(chunks) > 3
    assert max(splitter.count_tokens(c) for c in chunks) <= chunk


@pytest.mark.parametrize(("chunk", "overlap"), [(64, 16), (40, 0), (16, 15)])
def test_chunks_cover_every_character_of_the_text(
    tokenizer: PreTrainedTokenizerBase, chunk: int, overlap: int
) -> None:
    text = document()
    chunks = TextSplitter(tokenizer, chunk_tokens=chunk, overlap_tokens=overlap).split(text)

    covered = set()
    for start, end in spans(text, chunks):
        covered.update(range(start, end))
    assert [i for i, ch in enumerate(text) if not ch.isspace() and i not in covered] == []


def test_every_sentence_lies_whole_in_some_chunk(tokenizer: PreTrainedTokenizerBase) -> None:
    parts = sentences(40, seed=3)
    chunks = TextSplitter(tokenizer, chunk_tokens=48, overlap_tokens=16).split(" ".join(parts))

    assert [s for s in parts if not any(s in c for c in chunks)] == []


def test_next_chunk_repeats_trailing_sentences_within_the_overlap(tokenizer: PreTrainedTokenizerBase) -> None:
    splitter = TextSplitter(tokenizer, chunk_tokens=64, overlap_tokens=20)
    text = " ".join(sentences(30, seed=5, words=(3, 6)))

    chunks = splitter.split(text)
    found = spans(text, chunks)

    assert len(chunks) > 3
    for (_, previous_end), (start, _) in itertools.pairwise(found):
        shared = text[start:previous_end]
        assert start < previous_end, "consecutive chunks share no text"
        assert shared.endswith(".") and 0 < splitter.count_tokens(shared) <= 20


def test_a_chunk_ends_at_a_paragraph_break_in_its_second_half(tokenizer: PreTrainedTokenizerBase) -> None:
    splitter = TextSplitter(tokenizer, chunk_tokens=100, overlap_tokens=0)
    first, second = " ".join(sentences(4, seed=7)), " ".join(sentences(4, seed=8))
    assert 50 <= splitter.count_tokens(first) <= 100 and splitter.count_tokens(first + second) > 100

    assert splitter.split(f"{first}\n\n{second}") == [first, second]


def test_a_sentence_longer_than_a_chunk_is_cut_into_token_windows(tokenizer: PreTrainedTokenizerBase) -> None:
    splitter = TextSplitter(tokenizer, chunk_tokens=32, overlap_tokens=0)
    sentence = " ".join(f"overflow{i}" for i in range(100)) + "."

    chunks = splitter.split(sentence)

    assert len(chunks) == -(-splitter.count_tokens(sentence) // 32)
    assert "".join(chunks).replace(" ", "") == sentence.replace(" ", "")


def test_short_text_is_one_chunk(tokenizer: PreTrainedTokenizerBase) -> None:
    assert TextSplitter(tokenizer).split("  One sentence.\n\nAnd a second paragraph.\n") == [
        "One sentence.\n\nAnd a second paragraph."
    ]


@pytest.mark.parametrize("text", ["", "   \n\n\t "])
def test_blank_text_has_no_chunks(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    assert TextSplitter(tokenizer).split(text) == []


def test_tokens_are_counted_as_the_model_counts_them(tiny_model: OneGenModel) -> None:
    splitter = TextSplitter(tiny_model, chunk_tokens=50, overlap_tokens=10)

    chunks = splitter.split(document(seed=11))

    assert [splitter.count_tokens(c) for c in chunks] == [tiny_model.count_tokens(c) for c in chunks]


@pytest.mark.parametrize(("chunk", "overlap"), [(0, 0), (32, 32), (32, -1)])
def test_bad_sizes_are_refused(tokenizer: PreTrainedTokenizerBase, chunk: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="tokens must be"):
        TextSplitter(tokenizer, chunk_tokens=chunk, overlap_tokens=overlap)
