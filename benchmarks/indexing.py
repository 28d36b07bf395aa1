"""Indexing throughput: documents/s embedding paragraphs of SQuAD's lengths into Chroma.

The paragraphs vary in length as real ones do (`doc_tokens` on average, from half to one and
a half times it). `store.add` sorts a whole call by length before batching; `input_order`
embeds the same texts in chunks of `batch_size` as they come (what it did before), so long
and short paragraphs share padded batches on torch. On torch the achieved FLOP/s is also
compared with the best fp32 matmul FLOP/s torch reaches in the same run.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch
from onegen_evaluation.minilm import MiniLMEncoder

from benchmarks.timing import interleaved_medians, peak_rss_mib, ratio, timed
from benchmarks.workload import cut_to_tokens
from onegen_integrations.ingest import demo_documents
from onegen_integrations.model import OneGenModel
from onegen_integrations.store import ChromaDocumentStore


def matmul_peak_flops(size: int = 1024, rounds: int = 5) -> float:
    """Best fp32 FLOP/s of a `size`×`size` matmul over `rounds` tries (a peak, so the best)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(rounds))
    return 2 * size**3 / best


def matmul_parameters(model: OneGenModel) -> int:
    """Parameters a token's forward pass multiplies by: all but the input embedding table."""
    embedding = model.hf_model.get_input_embeddings().weight
    return sum(p.numel() for p in model.hf_model.get_decoder().parameters()) - embedding.numel()


def paragraphs(model: OneGenModel, doc_tokens: int, count: int) -> list[str]:
    """`count` demo-corpus texts (repeated, numbered) cut to lengths spread over 0.5-1.5 × `doc_tokens`."""
    source = " ".join(doc.text for doc in demo_documents())
    lengths = [max(4, round(doc_tokens * (0.5 + (i * 7 % count) / max(1, count - 1)))) for i in range(count)]
    return [f"({i}) {cut_to_tokens(model, source[i * 37 % 400 :], n)}" for i, n in enumerate(lengths)]


def measure_indexing(
    model: OneGenModel, encoder: MiniLMEncoder, *, docs: int, doc_tokens: int, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Documents/s of OneGen embedding (sorted and in input order), MiniLM, and `store.add` into Chroma."""
    texts = paragraphs(model, doc_tokens, docs)
    tokens = sum(len(ids) for ids in model.encode_texts(texts, model.config.document_template))

    def input_order() -> None:
        for start in range(0, len(texts), batch_size):
            model.embed_documents(texts[start : start + batch_size], batch_size=batch_size)

    medians = interleaved_medians(
        {
            "onegen": lambda: model.embed_documents(texts, batch_size=batch_size),
            "onegen_input_order": input_order,
            "minilm": lambda: encoder.encode(texts, batch_size=batch_size),
        },
        repeats,
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = ChromaDocumentStore(model, path=tmp, collection="bench")
        start = time.perf_counter()
        store.add(texts, batch_size=batch_size, show_progress=False)
        chroma_seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "docs": docs,
        "tokens_per_doc": round(tokens / docs, 1),
        "batch_size": batch_size,
        "docs_per_s": {
            "onegen": round(docs / medians["onegen"], 2),
            "onegen_input_order": round(docs / medians["onegen_input_order"], 2),
            "minilm": round(docs / medians["minilm"], 2),
            "onegen_into_chroma": round(docs / chroma_seconds, 2),
        },
        "sorted_vs_input_order_speedup": ratio(medians["onegen_input_order"], medians["onegen"]),
        "peak_rss_mib": peak_rss_mib(),
    }
    if model.hf_model is not None:
        params = matmul_parameters(model)
        achieved = 2 * params * tokens / medians["onegen"]
        peak = matmul_peak_flops()
        result |= {
            "matmul_parameters": params,
            "achieved_gflops": round(achieved / 1e9, 2),
            "matmul_peak_gflops": round(peak / 1e9, 2),
            "fraction_of_peak": ratio(achieved, peak),
        }
    return result
