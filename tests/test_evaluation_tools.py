"""`onegen eval tools`: the held-out set is well formed and held out, answers are scored as the
docs say, and the runner runs end to end on a tiny model."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from onegen_evaluation.tool_cases import CASES, DOCS, KINDS, TOOLS, ToolCase, held_out_cases
from onegen_evaluation.tool_use import average, format_tool_table, run_tool_cases, same_value, score_answer

from onegen_integrations.cli import main
from onegen_integrations.model import OneGenModel
from tests.conftest import make_tiny_model

TOOL_DATA = Path(__file__).resolve().parents[1] / "training" / "configs" / "tool_data.py"
_TYPES = {"number": (int, float), "string": (str,), "array": (list,)}


def _training_families() -> dict:
    spec = importlib.util.spec_from_file_location("tool_data", TOOL_DATA)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAMILIES


def _case(case_id: str) -> ToolCase:
    return next(c for c in CASES if c.id == case_id)


def _call(name: str, arguments: dict) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"(?<![\w-])-?\d+(?:\.\d+)?", text)]


@pytest.fixture(scope="module")
def roomy_model() -> OneGenModel:
    """A tiny random model whose window holds a system prompt with four tools and a passage."""
    return make_tiny_model(max_positions=2048)


def test_the_set_has_every_kind_in_the_documented_numbers() -> None:
    counts = {kind: sum(c.kind == kind for c in CASES) for kind in KINDS}
    assert counts == {"call": 40, "document": 15, "both": 11, "neither": 15}
    assert len({c.id for c in CASES}) == len(CASES) and len({c.request for c in CASES}) == len(CASES)


def test_every_case_offers_two_to_four_distinct_tools_and_its_expected_one() -> None:
    for case in CASES:
        names = [t.name for t in case.tools]
        assert 2 <= len(names) <= 4 and len(set(names)) == len(names), case.id
        assert (case.tool in names) if case.kind in ("call", "both") else case.tool is None, case.id
    assert [t.name for t in _case("call-01").tools] == ["room_bookings", "convert_currency"]  # seeded by the id


def test_expected_arguments_fit_their_tool_schema() -> None:
    for case in CASES:
        if case.tool is None:
            continue
        schema = TOOLS[case.tool].parameters
        assert set(case.arguments or {}) == set(schema["required"]) == set(schema["properties"]), case.id
        for name, value in (case.arguments or {}).items():
            prop = schema["properties"][name]
            assert isinstance(value, _TYPES[prop["type"]]), (case.id, name)
            assert value in prop.get("enum", [value]), (case.id, name)


def test_values_come_from_the_request_or_for_both_cases_only_from_the_document() -> None:
    for case in CASES:
        if case.tool is None:
            continue
        source = case.request if case.kind == "call" else DOCS[case.gold or ""]
        properties = TOOLS[case.tool].parameters["properties"]
        for name, value in (case.arguments or {}).items():
            if "enum" in properties[name]:
                continue  # a unit, scale or room the wording names in words
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    assert item in source and (case.kind == "call" or item not in case.request), (case.id, item)
                else:
                    assert item in _numbers(source), (case.id, item)
                    assert case.kind == "call" or item not in _numbers(case.request), (case.id, item)


def test_document_cases_name_a_document_of_the_corpus() -> None:
    golds = [c.gold for c in CASES if c.kind in ("document", "both")]
    assert all(g in DOCS for g in golds) and set(golds) == set(DOCS)
    assert all(c.gold is None for c in CASES if c.kind in ("call", "neither"))


def test_no_tool_name_or_parameter_name_is_one_training_uses() -> None:
    training = [schema["function"] for family in _training_families().values() for schema in family]
    names = {f["name"] for f in training}
    parameters = {p for f in training for p in f["parameters"]["properties"]}
    assert not names & set(TOOLS)
    assert not parameters & {p for tool in TOOLS.values() for p in tool.parameters["properties"]}


def test_a_limited_run_takes_each_kind_in_turn() -> None:
    assert [c.kind for c in held_out_cases(5)] == [*KINDS, "call"]
    assert sorted(c.id for c in held_out_cases()) == sorted(c.id for c in CASES)


def test_a_right_call_scores_with_numbers_by_value_and_strings_stripped() -> None:
    case = _case("call-01")  # 250 EUR to USD
    record = score_answer(case, _call(case.tool or "", {"amount": 250.0, "from_currency": " EUR", "to_currency": "USD"}), [])
    assert record["tool_choice"] == record["arguments"] == 1.0
    assert record["false_call"] is None and record["invalid_call"] == 0.0 and record["recall_at_1"] is None


@pytest.mark.parametrize("arguments", [
    {"amount": "250", "from_currency": "EUR", "to_currency": "USD"},  # a number as a string
    {"amount": 250, "from_currency": "EUR", "to_currency": "usd"},  # case matters
    {"amount": 250, "from_currency": "EUR"},  # one missing
    {"amount": 250, "from_currency": "EUR", "to_currency": "USD", "date": "today"},  # one extra
])
def test_the_right_tool_with_other_arguments_is_a_right_choice_but_not_an_exact_call(arguments: dict) -> None:
    record = score_answer(_case("call-01"), _call("convert_currency", arguments), [])
    assert record["tool_choice"] == 1.0 and record["arguments"] == 0.0


def test_only_the_first_call_counts_and_a_wrong_tool_gets_nothing() -> None:
    case = _case("call-01")
    right = _call("convert_currency", dict(case.arguments or {}))
    record = score_answer(case, _call("get_weather", {"city": "Lisbon"}) + right, [])
    assert record["tool_choice"] == record["arguments"] == 0.0 and len(record["calls"]) == 2
    assert score_answer(case, "About 270 dollars.", [])["tool_choice"] == 0.0


def test_a_call_where_none_is_needed_is_a_false_call() -> None:
    neither = _case("neither-01")
    assert score_answer(neither, "Hello! It is, thank you.", [])["false_call"] == 0.0
    record = score_answer(neither, _call("get_weather", {"city": "Lisbon"}), [])
    assert record["false_call"] == 1.0 and record["tool_choice"] == 0.0 and record["arguments"] is None


def test_invalid_json_counts_as_a_call_and_never_as_a_right_one() -> None:
    broken = '<tool_call>{"name": "convert_currency", "arguments": {"amount": 250,</tool_call>'
    record = score_answer(_case("call-01"), broken, [])
    assert record["invalid_call"] == 1.0 and record["tool_choice"] == record["arguments"] == 0.0
    assert record["calls"][0]["error"].startswith("the call is not valid JSON")
    cut_off = score_answer(_case("document-01"), '<tool_call>{"name": "next_departures"', ["ostrel-ferry"])
    assert cut_off["invalid_call"] == cut_off["false_call"] == 1.0


def test_retrieval_is_read_from_the_first_retrievals_ranking() -> None:
    case = _case("both-01")  # the Ostrel ferry fare, then a conversion
    call = _call(case.tool or "", dict(case.arguments or {}))
    hit = score_answer(case, call, ["ostrel-ferry"])
    assert hit["retrieved"] == hit["recall_at_1"] == hit["arguments"] == 1.0
    missed = score_answer(case, call, ["quillon-hut"])
    assert missed["retrieved"] == 1.0 and missed["recall_at_1"] == 0.0
    assert score_answer(case, call, [])["retrieved"] == 0.0


def test_same_value_compares_members_in_order_and_keeps_booleans_apart() -> None:
    assert same_value([12.4, 7.85], [12.40, 7.85]) and not same_value([7.85, 12.4], [12.4, 7.85])
    assert same_value({"a": [1, {"b": " x "}]}, {"a": [1.0, {"b": "x"}]})
    assert not same_value(True, 1) and not same_value(1, True) and not same_value(None, 0)


def test_averages_skip_cases_a_metric_does_not_apply_to() -> None:
    records = [score_answer(_case("call-01"), _call("convert_currency", dict(_case("call-01").arguments or {})), []),
               score_answer(_case("neither-01"), _call("get_weather", {"city": "Lisbon"}), [])]
    scores = average(records)
    assert scores.cases == 2 and scores.tool_choice == 0.5
    assert scores.arguments == 1.0 and scores.false_call == 1.0 and scores.recall_at_1 is None


def test_the_runner_scores_every_case_and_the_table_marks_what_was_not_run(roomy_model: OneGenModel) -> None:
    cases = [c for c in CASES if c.kind in ("call", "neither")][:2]
    result = run_tool_cases(roomy_model, cases, DOCS, name="tiny", max_new_tokens=3)
    assert [e["case"] for e in result.examples] == [c.id for c in cases]
    assert result.kinds["document"].cases == 0 and result.kinds["document"].recall_at_1 is None
    row = format_tool_table([result]).splitlines()[2]
    assert row.startswith("| tiny |") and "| - |" in row


def test_a_model_that_always_asks_retrieves_on_every_case() -> None:
    model = make_tiny_model(max_positions=2048)
    head = model.hf_model.get_output_embeddings()  # a huge bias on [RQ]
    head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
    with torch.no_grad():
        head.bias[model.query_token_id] = 1e4
    result = run_tool_cases(model, held_out_cases(4), DOCS, name="asks", max_new_tokens=2)
    assert result.overall.retrieved == 1.0
    assert all(len(e["ranking"]) == 1 and e["ranking"][0] in DOCS for e in result.examples)
    assert result.kinds["document"].recall_at_1 in (0.0, 1.0)


def test_eval_tools_command_prints_a_table_and_merges_results(roomy_model: OneGenModel, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tools.json"
    args = ["eval", "tools", "--systems", "onegen", "--limit", "4", "--max-new-tokens", "2", "--out", str(out)]
    assert main(args, model=roomy_model) == 0
    printed = capsys.readouterr().out
    assert "4 cases (1 call, 1 document, 1 both, 1 neither)" in printed and "| onegen |" in printed
    saved = json.loads(out.read_text())["onegen"]
    assert saved["overall"]["cases"] == 4 and set(saved["kinds"]) == set(KINDS) and len(saved["examples"]) == 4


def test_eval_tools_command_rejects_unknown_systems(roomy_model: OneGenModel, capsys) -> None:
    assert main(["eval", "tools", "--systems", "minilm-raw"], model=roomy_model) == 2
    assert "unknown eval systems minilm-raw" in capsys.readouterr().err
