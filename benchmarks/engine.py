"""Core engine numbers on one machine, in one run: decode speed, retrieval overhead,
indexing throughput and peak memory.

    python benchmarks/engine.py [--model default] [--repeats 5] [--json out.json]

Timings are medians over interleaved repeats, so background noise hits each variant alike.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import resources

import torch

from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from onegen_integrations.retrieval import Hit, RetrievalQuery
from onegen_integrations.store import ChromaDocumentStore

QUESTION = "Who founded the Varenne Institute, and when?"


class FixedRetriever:
    """Always returns one passage, so retrieval cost is the engine's, not a search's."""

    def __init__(self, text: str) -> None:
        self.text = text

    def retrieve(self, query: RetrievalQuery) -> list[Hit]:
        return [Hit(id="p", text=self.text, score=1.0)]


def no_eos(model: OneGenModel) -> Callable:
    """Ban end-of-sequence so every variant generates exactly the same number of tokens."""
    eos = model.tokenizer.eos_token_id

    def processor(generated, logits):
        logits[eos] = float("-inf")
        return logits

    return processor


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def corpus_texts(model: OneGenModel, tokens: int, count: int) -> list[str]:
    """Demo-corpus documents cut to about `tokens` tokens, repeated up to `count`."""
    lines = resources.files("onegen_integrations").joinpath("demo/corpus.jsonl").read_text().splitlines()
    texts = [model.tokenizer.decode(model.tokenize(json.loads(line)["text"])[:tokens]) for line in lines]
    return [f"{texts[i % len(texts)]} ({i})" for i in range(count)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--docs", type=int, default=96)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        model = OneGenModel.load(args.model)
    passage = corpus_texts(model, 64, 1)[0]
    n = args.new_tokens
    ban = no_eos(model)

    def engine_turn() -> None:
        model.session(None, logits_processor=ban).ask(QUESTION, max_new_tokens=n)

    def hf_generate() -> None:
        ids = model.tokenizer.apply_chat_template(
            [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        with torch.inference_mode():
            model.hf_model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    def one_pass_turn() -> None:
        model.session(FixedRetriever(passage), retrieval="always", logits_processor=ban).ask(QUESTION, max_new_tokens=n)

    def passage_in_prompt_turn() -> None:
        # Lower bound: the same passage already in the prompt, no retrieval at all.
        model.session(None, logits_processor=ban).ask(f"{passage}\n{QUESTION}", max_new_tokens=n)

    variants = {"engine": engine_turn, "hf_generate": hf_generate, "one_pass": one_pass_turn, "passage_in_prompt": passage_in_prompt_turn}
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(median_time(fn, 1))
    med = {name: statistics.median(t) for name, t in times.items()}

    prompt_only = median_time(lambda: model.session(None).ask(QUESTION, max_new_tokens=1), args.repeats)
    decode_tps = (n - 1) / (med["engine"] - prompt_only)
    texts = corpus_texts(model, 64, args.docs)
    embed_seconds = median_time(lambda: model.embed_documents(texts, batch_size=16), max(1, args.repeats // 2))
    with tempfile.TemporaryDirectory() as tmp:
        store = ChromaDocumentStore(model, path=tmp, collection="bench")
        start = time.perf_counter()
        store.add(texts, show_progress=False)
        store_seconds = time.perf_counter() - start

    results = {
        "machine": {"torch_threads": torch.get_num_threads(), "python": sys.version.split()[0]},
        "model": model.name,
        "new_tokens": n,
        "decode_tokens_per_s": round(decode_tps, 2),
        "engine_vs_hf_generate_time_ratio": round(med["engine"] / med["hf_generate"], 3),
        "turn_seconds": {k: round(v, 3) for k, v in med.items()},
        "retrieval_overhead_seconds": round(med["one_pass"] - med["passage_in_prompt"], 3),
        "retrieval_overhead_ratio": round(med["one_pass"] / med["passage_in_prompt"], 3),
        "passage_tokens": model.count_tokens(passage),
        "embed_docs_per_s_64_tokens": round(len(texts) / embed_seconds, 2),
        "index_docs_per_s_64_tokens_with_chroma": round(len(texts) / store_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
