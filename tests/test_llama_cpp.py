"""The llama.cpp backend against torch on tiny random models exported to GGUF: the same vectors,
the same answers, one pass over the dialogue, the context-window policy, many sessions and
threads, and clear errors for bad files."""

from __future__ import annotations

import gc
import threading
import warnings

import numpy as np
import pytest
import torch

from onegen_integrations.backends import selection
from onegen_integrations.backends.selection import resolve_backend
from onegen_integrations.errors import (
    BackendUnavailableError,
    ExportError,
    InvalidGGUFError,
    ModelNotFoundError,
    SessionBusyError,
)
from onegen_integrations.gguf_files import read_onegen_gguf
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning
from tests.conftest import ListRetriever, make_tiny_model

pytest.importorskip("llama_cpp")
from onegen_integrations.backends.llama_cpp_backend import LlamaCppBackend

DOCS = [
    "Ada Lovelace wrote the first program for the Analytical Engine.",
    "The Rhine flows from the Alps to the North Sea through six countries.",
    "Kraków was the capital of Poland until 1596. " * 6,
    "Short.",
]
DIALOGUE = ["Who wrote the first program?", "Which river reaches the North Sea?", "And the old capital?"]


def load_gguf(path, **options) -> OneGenModel:
    contents = read_onegen_gguf(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel(LlamaCppBackend(path, contents, **options), contents.tokenizer, contents.config)


@pytest.fixture(scope="module")
def torch_model() -> OneGenModel:
    return make_tiny_model(seed=3, layers=3)


@pytest.fixture(scope="module")
def f16_path(torch_model, tmp_path_factory):
    return torch_model.export_gguf(tmp_path_factory.mktemp("gguf") / "tiny.f16.gguf", "f16")


@pytest.fixture(scope="module")
def llama_model(f16_path) -> OneGenModel:
    return load_gguf(f16_path)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_document_vectors_match_torch_for_each_export_type(torch_model, llama_model, tmp_path):
    expected = torch_model.embed_documents(DOCS)
    assert cosines(llama_model.embed_documents(DOCS), expected).min() >= 0.999
    bf16 = load_gguf(torch_model.export_gguf(tmp_path / "tiny.bf16.gguf", "bf16"))
    assert cosines(bf16.embed_documents(DOCS), expected).min() >= 0.999
    q8 = load_gguf(torch_model.export_gguf(tmp_path / "tiny.q8_0.gguf", "q8_0"))
    assert cosines(q8.embed_documents(DOCS), expected).min() >= 0.99
    assert (tmp_path / "tiny.q8_0.gguf").stat().st_size < llama_model.backend.path.stat().st_size


def test_batched_documents_equal_one_at_a_time(llama_model):
    together = llama_model.embed_documents(DOCS * 5, batch_size=20)
    alone = np.stack([llama_model.embed_documents([doc])[0] for doc in DOCS])
    np.testing.assert_allclose(together, np.tile(alone, (5, 1)), atol=1e-3)  # f16 sums in another order


def test_the_gguf_carries_fingerprint_tokens_and_config(torch_model, llama_model):
    assert llama_model.fingerprint == torch_model.fingerprint
    assert llama_model.query_token_id == torch_model.query_token_id
    assert llama_model.eos_token_ids == torch_model.eos_token_ids
    assert llama_model.context_window == torch_model.context_window
    assert llama_model.tokenize("a [RQ] b") == torch_model.tokenize("a [RQ] b")


def test_rq_state_over_the_cache_equals_a_fresh_forward(torch_model, llama_model):
    first = [*torch_model.tokenize(DIALOGUE[0]), torch_model.query_token_id]
    second = [*torch_model.tokenize(" and then"), torch_model.query_token_id]
    cache = llama_model.new_cache()
    llama_model.forward(first, cache)
    stepped = llama_model.forward(second, cache).states[-1]
    fresh = torch_model.forward(first + second, torch_model.new_cache())
    assert torch.nn.functional.cosine_similarity(stepped, fresh.states[-1], dim=0) >= 0.999
    torch.testing.assert_close(llama_model.forward(first + second, llama_model.new_cache()).states[-1], stepped,
                               atol=1e-3, rtol=1e-3)


def run_dialogue(model: OneGenModel, **options) -> list:
    session = model.session(ListRetriever(model, DOCS), retrieval="always", max_new_tokens=8, **options)
    return [session.ask(message) for message in DIALOGUE]


def test_a_dialogue_gives_the_same_answers_and_retrievals_as_torch(torch_model, llama_model):
    expected = run_dialogue(torch_model)
    got = run_dialogue(llama_model)
    assert [d.text for d in got] == [d.text for d in expected]
    assert [[h.id for r in d.retrievals for h in r.hits] for d in got] == [
        [h.id for r in d.retrievals for h in r.hits] for d in expected
    ]


def test_each_turn_decodes_only_its_own_tokens(llama_model):
    session = llama_model.session(ListRetriever(llama_model, DOCS), retrieval="always", max_new_tokens=6)
    backend = llama_model.backend
    total = 0
    for message in DIALOGUE:
        before = backend.decoded_tokens
        done = session.ask(message)
        decoded = backend.decoded_tokens - before
        assert decoded == done.usage.processed_tokens
        total += decoded
    assert total == len(session.token_ids)  # every token of the dialogue decoded exactly once


def test_the_context_window_policy_drops_old_turns_and_rebuilds_once(torch_model, llama_model):
    options = {"context_window": 160, "retrieval": "never", "max_new_tokens": 12}
    sessions = [m.session(**options) for m in (torch_model, llama_model)]
    for message in ["Tell me about the Rhine and the Alps and the sea.", *DIALOGUE, "One more question?"]:
        answers = [s.ask(message) for s in sessions]
        assert answers[0].text == answers[1].text
        assert answers[0].usage.rebuilt_tokens == answers[1].usage.rebuilt_tokens
    assert sessions[1].dropped_turns == sessions[0].dropped_turns > 0
    assert len(sessions[1].token_ids) <= 160


def test_many_sessions_on_few_sequences_refeed_after_eviction(f16_path, llama_model):
    expected = [d.text for d in run_dialogue(llama_model)]
    small = load_gguf(f16_path, sequences=2)
    retriever = ListRetriever(small, DOCS)
    sessions = [small.session(retriever, retrieval="always", max_new_tokens=8) for _ in range(4)]
    answers: list[list[str]] = [[] for _ in sessions]
    for message in DIALOGUE:  # round robin: each session finds its sequence taken by another
        for session, texts in zip(sessions, answers):
            texts.append(session.ask(message).text)
    assert all(texts == expected for texts in answers)


def test_a_larger_buffer_keeps_every_conversation_cached(f16_path):
    """Four dialogues that together outgrow one context window: with room for all, nothing is re-fed."""
    roomy = load_gguf(f16_path, sequences=4, cache_tokens=4 * 512)
    retriever = ListRetriever(roomy, DOCS)
    sessions = [roomy.session(retriever, retrieval="always", max_new_tokens=8) for _ in range(4)]
    before = roomy.backend.decoded_tokens  # the documents' embeddings
    for message in DIALOGUE:
        for session in sessions:
            session.ask(message)
    assert sum(len(s.token_ids) for s in sessions) > roomy.context_window
    assert roomy.backend.decoded_tokens - before == sum(s.fed_tokens for s in sessions)
    assert load_gguf(f16_path, sequences=1000).backend.sequences == 256  # llama.cpp's own limit


def test_threads_share_one_model_and_get_their_own_answers(llama_model):
    expected = [d.text for d in run_dialogue(llama_model)]
    results: dict[int, list[str]] = {}

    def converse(i: int) -> None:
        results[i] = [d.text for d in run_dialogue(llama_model)]

    threads = [threading.Thread(target=converse, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(range(4), expected)


def test_a_busy_session_refuses_a_second_caller(llama_model):
    session = llama_model.session(retrieval="never", max_new_tokens=4)
    stream = session.send(DIALOGUE[0])
    next(stream)
    with pytest.raises(SessionBusyError):
        session.ask("second caller")
    stream.close()


def test_an_export_target_that_exists_is_refused(torch_model, f16_path):
    before = f16_path.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        torch_model.export_gguf(f16_path, "f16")
    assert f16_path.read_bytes() == before


def test_a_truncated_gguf_is_refused(f16_path, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(f16_path.read_bytes()[: f16_path.stat().st_size // 2])
    with pytest.raises(InvalidGGUFError, match="truncated"):
        OneGenModel.load(broken, backend="llama.cpp")


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    junk = tmp_path / "model.gguf"
    junk.write_text("not a model")
    with pytest.raises(InvalidGGUFError, match="not a GGUF file"):
        OneGenModel.load(junk, backend="llama.cpp")


def test_a_gguf_without_onegen_tokens_is_refused(tmp_path):
    import gguf

    path = tmp_path / "plain.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InvalidGGUFError, match="without OneGen metadata"):
        OneGenModel.load(path, backend="llama.cpp")


def test_auto_falls_back_to_torch_and_llama_cpp_says_how_to_install(monkeypatch):
    monkeypatch.setattr(selection, "llama_cpp_installed", lambda: False)
    assert resolve_backend("auto", prefer_llama_cpp=True) == "torch"
    with pytest.raises(BackendUnavailableError, match="pip install llama-cpp-python"):
        resolve_backend("llama.cpp", prefer_llama_cpp=True)


def test_auto_takes_llama_cpp_for_the_default_and_torch_for_directories():
    assert resolve_backend("auto", prefer_llama_cpp=False) == "torch"
    assert resolve_backend("auto", prefer_llama_cpp=True) == ("torch" if torch.cuda.is_available() else "llama.cpp")


def test_seeded_sampling_repeats_and_stop_strings_cut(llama_model):
    options = {"retrieval": "never", "max_new_tokens": 12, "temperature": 1.0, "top_p": 0.9}
    first, second = (llama_model.session(seed=7, **options).ask(DIALOGUE[0]) for _ in range(2))
    assert first.text == second.text and first.usage.completion_tokens == 12
    stop = first.text[len(first.text) // 2 :][:3]
    cut = llama_model.session(seed=7, **options).ask(DIALOGUE[0], stop=(stop,))
    assert cut.finish_reason == "stop" and stop not in cut.text and first.text.startswith(cut.text)


def test_a_model_that_keeps_asking_stops_at_max_retrievals(llama_model):
    def always_ask(generated, logits):  # wherever the engine still allows [RQ]
        if logits[llama_model.query_token_id] > float("-inf"):
            logits[llama_model.query_token_id] = 1e4
        return logits

    session = llama_model.session(ListRetriever(llama_model, DOCS), logits_processor=always_ask, max_retrievals=3)
    done = session.ask(DIALOGUE[0], max_new_tokens=10)
    assert done.usage.retrievals == 3 and done.usage.completion_tokens == 10


def test_con_insertion_queries_with_the_rq_state(torch_model, llama_model):
    vectors = []
    for model in (torch_model, llama_model):
        retriever = ListRetriever(model, DOCS)
        model.session(retriever, retrieval="always", insertion="con", max_new_tokens=3).ask(DIALOGUE[1])
        vectors.append(retriever.queries[0].vector)
    assert cosines(vectors[0][None], vectors[1][None])[0] >= 0.999


def test_sessions_that_are_gone_free_their_place_in_the_kv_buffer(llama_model):
    backend = llama_model.backend
    before = backend.held_positions
    sessions = [llama_model.session(retrieval="never", max_new_tokens=4) for _ in range(3)]
    for session in sessions:
        session.ask(DIALOGUE[0])
    assert backend.held_positions == before + sum(len(s.token_ids) for s in sessions)
    del sessions, session
    gc.collect()
    assert backend.held_positions == before


def test_a_missing_gguf_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelNotFoundError, match="onegen export-gguf"):
        OneGenModel.load(tmp_path / "nowhere.gguf")


def test_a_directory_on_llama_cpp_is_exported_once_and_again_when_it_changes(torch_model, tmp_path, monkeypatch):
    monkeypatch.setenv("ONEGEN_HOME", str(tmp_path / "home"))
    directory = torch_model.save(tmp_path / "model")
    first = load_directory(directory)
    exported = list((tmp_path / "home" / "models").glob("*.gguf"))
    assert len(exported) == 1 and first.fingerprint == torch_model.fingerprint
    load_directory(directory)
    assert list((tmp_path / "home" / "models").glob("*.gguf")) == exported  # reused, not exported again
    config = directory / "onegen.json"
    config.write_text(config.read_text().replace('"trained": false', '"trained": true'))
    assert load_directory(directory).trained
    assert len(list((tmp_path / "home" / "models").glob("*.gguf"))) == 2


def load_directory(directory) -> OneGenModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.load(directory, backend="llama.cpp")
