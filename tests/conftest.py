"""Shared fixtures: tiny random models built from a config, and the real default model."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from onegen_integrations.default_model import default_model_dir
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from tests.servers import ChromaServer


def make_tiny_model(seed: int = 0, *, max_positions: int = 512, layers: int = 2) -> OneGenModel:
    """A 2-layer random Llama with the default model's tokenizer (chat template included)."""
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel(LlamaForCausalLM(config), tokenizer, add_tokens=True, name=f"tiny-{seed}")


@pytest.fixture
def tiny_model() -> OneGenModel:
    """A fresh tiny random OneGen model (seed 0)."""
    return make_tiny_model()


@pytest.fixture(scope="session")
def default_model() -> OneGenModel:
    """The embedded SmolLM2-135M-Instruct default: the process-wide shared instance, the
    same object that framework components built from the name "default" use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.shared("default")


TOOL_MODEL_VARIABLE = "ONEGEN_TOOL_MODEL"


@pytest.fixture(scope="session")
def tool_model() -> OneGenModel:
    """A OneGen model trained to call tools, from `$ONEGEN_TOOL_MODEL` (such as `runs/tools/model`,
    which `training/configs/smollm2-135m-lora-tools.yaml` writes); the end-to-end agent tests skip
    without one, because the shipped default has not learned tool calls."""
    path = os.environ.get(TOOL_MODEL_VARIABLE)
    if not path:
        pytest.skip(f"set {TOOL_MODEL_VARIABLE} to a tool-trained OneGen model directory (training/README.md, Tool calling)")
    return OneGenModel.shared(path)


@pytest.fixture(scope="module")
def module_chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """A `chroma run` server over a fresh database, shared by one test module and killed after it."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


class ListRetriever:
    """A brute-force retriever over a few texts: the engine's `Retriever` protocol, no store."""

    def __init__(self, model: OneGenModel, texts: list[str]) -> None:
        self.texts = texts
        self.vectors = model.embed_documents(texts)
        self.queries: list = []

    def retrieve(self, query):
        from onegen_integrations.retrieval import Hit

        self.queries.append(query)
        scores = self.vectors @ query.vector
        order = scores.argsort()[::-1][: query.k]
        return [Hit(id=str(i), text=self.texts[i], score=float(scores[i])) for i in order]
