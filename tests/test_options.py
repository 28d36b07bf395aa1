"""GenerationOptions: every default and rule of generation, typed once, and what reads them."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from onegen_integrations.errors import InvalidOptionError
from onegen_integrations.options import DEFAULTS, GenerationOptions, default, help_text, option_names
from tests.conftest import ListRetriever

ROOT = Path(__file__).parents[1]
ENGINE_DOC = ROOT / "docs" / "engine.md"
TABLE_HEADER = "| option | default | what it does |"


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("retrieval", "sometimes", "one of 'auto', 'always', 'never'"),
        ("insertion", "hits", "one of 'passage', 'con'"),
        ("k", 0, "at least 1"),
        ("k", 1.5, "an integer, at least 1"),
        ("max_retrievals", -1, "at least 0"),
        ("max_new_tokens", 0, "at least 1"),
        ("max_passage_tokens", 0, "at least 1"),
        ("temperature", -0.5, "at least 0"),
        ("temperature", "hot", "a number, at least 0"),
        ("top_p", 0.0, "greater than 0 and at most 1"),
        ("top_p", 1.5, "greater than 0 and at most 1"),
        ("top_p", float("nan"), "greater than 0 and at most 1"),
        ("top_k", -1, "at least 0"),
        ("stop", ["ok", 3], "a string or a sequence of strings"),
    ],
)
def test_a_value_out_of_range_names_the_option_the_value_and_what_is_allowed(option, value, allowed):
    with pytest.raises(InvalidOptionError) as error:
        GenerationOptions(**{option: value})

    assert str(error.value) == f"{option} must be {allowed}, not {value!r}"
    assert isinstance(error.value, ValueError) and error.value.option == option


def test_stop_becomes_a_tuple_of_non_empty_strings():
    assert GenerationOptions(stop="###").stop == ("###",)
    assert GenerationOptions(stop=["", "\n\n", ""]).stop == ("\n\n",)


def test_numbers_take_their_options_type():
    options = GenerationOptions(temperature=1, top_p=1)
    assert options.temperature == 1.0 and isinstance(options.temperature, float)
    assert isinstance(options.top_p, float)


def test_every_option_has_a_default_and_a_one_line_help():
    for option in dataclasses.fields(GenerationOptions):
        assert default(option.name) == option.default == getattr(DEFAULTS, option.name)
        assert help_text(option.name) and "\n" not in help_text(option.name)
    assert option_names() == tuple(option.name for option in dataclasses.fields(GenerationOptions))


def test_replace_refuses_unknown_options_and_checks_values():
    with pytest.raises(TypeError, match=r"unknown generation options \['beam_width'\]: the options are retrieval, k"):
        DEFAULTS.replace(beam_width=3)
    with pytest.raises(InvalidOptionError, match="k must be at least 1, not 0"):
        DEFAULTS.replace(k=0)


def test_the_options_module_imports_neither_torch_nor_transformers():
    # The package's __init__ is bypassed: this is about options.py and what it imports.
    script = (
        "import sys, types\n"
        f"package = types.ModuleType('onegen_integrations'); package.__path__ = [{str(ROOT / 'onegen_integrations')!r}]\n"
        "sys.modules['onegen_integrations'] = package\n"
        "import onegen_integrations.options\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pydantic', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_engine_docs_table_lists_every_option_with_its_default_in_field_order():
    if not ENGINE_DOC.is_file():
        pytest.skip(f"{ENGINE_DOC.relative_to(ROOT)} does not exist yet: its GenerationOptions table is checked once it does")
    lines = ENGINE_DOC.read_text(encoding="utf-8").splitlines()
    assert TABLE_HEADER in lines, f"{ENGINE_DOC.name} has no table headed {TABLE_HEADER!r}"
    rows = []
    for line in lines[lines.index(TABLE_HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        row = re.match(r"\| `([^`]+)` \| `([^`]*)` \|", line)
        assert row, f"a row of the options table must begin | `name` | `default` |: {line!r}"
        rows.append(row.groups())

    assert rows == [(option.name, repr(option.default)) for option in dataclasses.fields(GenerationOptions)]


def test_a_session_takes_its_defaults_as_options_and_checks_them(tiny_model):
    session = tiny_model.session(ListRetriever(tiny_model, ["Ada was born in Paris."]), k=2, stop="###")
    assert session.options == DEFAULTS.replace(retrieval="always", k=2, stop=("###",))  # untrained: always
    with pytest.raises(InvalidOptionError, match="max_new_tokens must be at least 1, not 0"):
        tiny_model.session(max_new_tokens=0)
    with pytest.raises(TypeError, match="unknown generation options"):
        tiny_model.session(beam_width=3)


def test_a_turns_overrides_are_checked_like_the_sessions_options(tiny_model):
    session = tiny_model.session(max_new_tokens=2)
    with pytest.raises(InvalidOptionError, match=r"top_p must be greater than 0 and at most 1, not 0"):
        session.send("Hello", top_p=0)
    with pytest.raises(TypeError, match="unknown generation options"):
        session.send("Hello", beam_width=3)
    assert session.ask("Hello", max_new_tokens=1).usage.completion_tokens == 1
