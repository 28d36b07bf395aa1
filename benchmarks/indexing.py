"""Indexing throughput: documents/s embedding a corpus, against this CPU's measured matmul peak.

Achieved FLOP/s is `2 × non-embedding parameters × tokens / s` (attention score FLOPs and
the embedding lookup left out), compared with the best fp32 matmul FLOP/s torch reaches
in the same run with the same threads.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch

from benchmarks.timing import interleaved_medians, peak_rss_mib, ratio, timed
from benchmarks.workload import corpus_texts
from onegen_integrations.evaluation.minilm import MiniLMEncoder
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


def measure_indexing(
    model: OneGenModel, encoder: MiniLMEncoder, *, docs: int, doc_tokens: int, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Documents/s and FLOP/s of OneGen embedding, MiniLM for comparison, and Chroma indexing."""
    texts = corpus_texts(model, doc_tokens, docs)
    tokens = sum(len(ids) for ids in model.encode_texts(texts, model.config.document_template))
    medians = interleaved_medians(
        {
            "onegen": lambda: model.embed_documents(texts, batch_size=batch_size),
            "minilm": lambda: encoder.encode(texts, batch_size=batch_size),
        },
        repeats,
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = ChromaDocumentStore(model, path=tmp, collection="bench")
        start = time.perf_counter()
        store.add(texts, batch_size=batch_size, show_progress=False)
        chroma_seconds = time.perf_counter() - start
    params = matmul_parameters(model)
    achieved = 2 * params * tokens / medians["onegen"]
    peak = matmul_peak_flops()
    return {
        "docs": docs,
        "tokens_per_doc": round(tokens / docs, 1),
        "batch_size": batch_size,
        "docs_per_s": {
            "onegen": round(docs / medians["onegen"], 2),
            "minilm": round(docs / medians["minilm"], 2),
            "onegen_into_chroma": round(docs / chroma_seconds, 2),
        },
        "matmul_parameters": params,
        "achieved_gflops": round(achieved / 1e9, 2),
        "matmul_peak_gflops": round(peak / 1e9, 2),
        "fraction_of_peak": ratio(achieved, peak),
        "peak_rss_mib": peak_rss_mib(),
    }
