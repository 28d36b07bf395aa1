"""OneGenModel: loading, the model contract, embeddings and the fingerprint."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from onegen_integrations.config import OneGenConfig
from onegen_integrations.errors import (
    DocumentTooLongError,
    EmptyTextError,
    ModelNotFoundError,
    ModelNotOneGenError,
)
from onegen_integrations.model import TOKEN_ROWS_FILE, OneGenModel, UntrainedRetrievalWarning
from tests.conftest import ListRetriever, make_tiny_model

TEXTS = ["Ada was born in Paris.", "Bob", "Cleo built a bridge in 1901 over the wide river.", "Dan."]


def test_batched_embeddings_equal_one_at_a_time(tiny_model):
    batched = tiny_model.embed_documents(TEXTS, batch_size=3)
    single = np.stack([tiny_model.embed_documents([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_document_vector_is_the_post_norm_state_at_the_document_token(tiny_model):
    ids = tiny_model.text.fill(tiny_model.config.document_template, TEXTS[0])
    assert ids[-1] == tiny_model.document_token_id
    with torch.no_grad():
        state = tiny_model.hf_model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
    expected = torch.nn.functional.normalize(state, dim=-1).numpy()
    np.testing.assert_allclose(tiny_model.embed_documents([TEXTS[0]])[0], expected, atol=1e-5)


def test_query_and_document_sides_differ(tiny_model):
    assert not np.allclose(tiny_model.embed_query(TEXTS[0]), tiny_model.embed_documents([TEXTS[0]])[0])


def test_bad_texts_are_refused_before_any_work(tiny_model):
    with pytest.raises(EmptyTextError, match="text 1 is empty"):
        tiny_model.embed_documents(["fine", "  "])
    with pytest.raises(DocumentTooLongError, match="split it"):
        tiny_model.embed_documents(["word " * 600])
    with pytest.raises(TypeError, match="list of texts"):
        tiny_model.embed_documents("one string")


def test_unknown_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nothing is downloaded"):
        OneGenModel.load(tmp_path / "nowhere")


def test_plain_causal_lm_needs_add_tokens(tmp_path):
    plain = make_tiny_model()
    AutoModelForCausalLM.from_config(plain.hf_model.config).save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    from onegen_integrations.default_model import default_model_dir

    AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(tmp_path)
    with pytest.raises(ModelNotOneGenError, match="add_tokens=True"):
        OneGenModel.load(tmp_path)
    with pytest.warns(UntrainedRetrievalWarning):
        model = OneGenModel.load(tmp_path, add_tokens=True)
    assert model.tokenizer.convert_ids_to_tokens(model.query_token_id) == "[RQ]"


def test_saved_model_loads_with_the_same_vectors_and_fingerprint(tiny_model, tmp_path):
    tiny_model.config = tiny_model.config.model_copy(update={"trained": True})
    tiny_model.save(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedRetrievalWarning)
        loaded = OneGenModel.load(tmp_path)
    assert loaded.fingerprint == tiny_model.fingerprint
    np.testing.assert_allclose(loaded.embed_documents(TEXTS), tiny_model.embed_documents(TEXTS), atol=1e-6)


def test_fingerprint_tracks_weights_and_templates_but_not_precision(tiny_model):
    other = make_tiny_model(seed=1)
    assert other.fingerprint != tiny_model.fingerprint
    bf16 = OneGenModel(make_tiny_model().hf_model.to(torch.bfloat16), tiny_model.tokenizer)
    assert bf16.fingerprint == tiny_model.fingerprint
    retemplated = make_tiny_model()
    retemplated.config = retemplated.config.model_copy(update={"document_template": "Document: {text}[RD]"})
    assert retemplated.fingerprint != tiny_model.fingerprint


def test_lora_adapter_directory_merges_into_its_base(tiny_model, tmp_path):
    base = tmp_path / "base"
    tiny_model.hf_model.save_pretrained(base)
    tiny_model.tokenizer.save_pretrained(base)
    adapter = tmp_path / "model" / "adapter"
    adapter.mkdir(parents=True)
    rank, alpha, hidden = 2, 4.0, tiny_model.dimension
    torch.manual_seed(5)
    lora_a, lora_b = torch.randn(rank, hidden), torch.randn(hidden, rank)
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": lora_a,
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": lora_b,
        },
        adapter / "adapter_model.safetensors",
    )
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": alpha}))
    rows = torch.randn(len(tiny_model.config.tokens.all()), hidden)
    save_file({"input": rows}, tmp_path / "model" / TOKEN_ROWS_FILE)
    OneGenConfig(trained=True, base_model="../base", adapter="adapter", token_embeddings=TOKEN_ROWS_FILE).write(
        tmp_path / "model"
    )
    loaded = OneGenModel.load(tmp_path / "model")
    expected = tiny_model.hf_model.model.layers[0].self_attn.q_proj.weight + (alpha / rank) * lora_b @ lora_a
    torch.testing.assert_close(loaded.hf_model.model.layers[0].self_attn.q_proj.weight, expected)
    torch.testing.assert_close(loaded.hf_model.get_input_embeddings().weight[loaded.query_token_id], rows[0])
    assert loaded.trained and loaded.fingerprint != tiny_model.fingerprint


@pytest.mark.default_model
def test_default_model_embeds_and_answers(default_model):
    assert default_model.name == "default" and default_model.dimension == 576 and default_model.trained
    assert default_model.context_window == 8192
    facts = ["The Kestrel Bridge crosses the River Oren.", "Pears are fruit.", "Paris is the capital of France."]
    retriever = ListRetriever(default_model, facts)
    assert retriever.vectors.shape == (3, 576)
    done = default_model.session(retriever, max_new_tokens=12).ask("Which river does the Kestrel Bridge cross?")
    assert "Oren" in done.text and [h.text for h in done.retrievals[0].hits] == [facts[0]]
    # Common knowledge and small talk need no document: answered without a retriever, as the base would.
    for message, expected in [("What is the capital of France?", "Paris"), ("Hello!", "How can I")]:
        done = default_model.session(None, max_new_tokens=12).ask(message)
        assert done.finish_reason == "eos" and expected in done.text, done.text


@pytest.mark.default_model
def test_default_base_is_the_untrained_smollm2():
    with pytest.warns(UntrainedRetrievalWarning):
        base = OneGenModel.load("default-base")
    assert base.name == "default-base" and not base.trained and base.dimension == 576
