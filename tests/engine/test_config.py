from __future__ import annotations

import pytest
from turnout.errors import PolicyError
from turnout.policy.loader import load_document, parse_document


def test_positions_point_at_keys_and_items() -> None:
    doc = parse_document(
        "providers:\n  mock:\n    type: mock\nroutes:\n  - name: a\n", file="p.yaml"
    )
    assert doc.locate(("providers", "mock", "type")) == (3, 5)
    assert doc.locate(("routes", 0)) == (5, 5)
    assert doc.locate(("routes", 0, "name", "deeper")) == (5, 5)  # nearest located parent


def test_env_interpolation_with_defaults() -> None:
    text = 'a: "${HOST}:${PORT:-8080}"\nb: "${EMPTY:-fallback}"\nc: plain $HOME\n'
    doc = parse_document(text, env={"HOST": "example", "EMPTY": ""})
    assert doc.data == {"a": "example:8080", "b": "fallback", "c": "plain $HOME"}
    assert doc.missing_env == {}


def test_unset_variable_without_default_is_recorded_not_raised() -> None:
    doc = parse_document('providers: {x: {api_key: "${NOPE}"}}', env={})
    assert doc.data["providers"]["x"]["api_key"] == ""
    assert doc.missing_env == {("providers", "x", "api_key"): "NOPE"}


def test_syntax_error_names_line_and_column_and_hints_quoting() -> None:
    with pytest.raises(PolicyError) as info:
        parse_document("providers:\n  openai: {type: openai, api_key: ${KEY}}\n", file="r.yaml")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("r.yaml", 2)
    assert problem.column is not None
    assert problem.hint is not None and "quote" in problem.hint


def test_duplicate_keys_are_a_located_error() -> None:
    with pytest.raises(PolicyError) as info:
        parse_document("routes: []\nroutes: []\n", file="r.yaml")
    assert info.value.problems[0].line == 2


def test_missing_file_is_a_policy_error(tmp_path) -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_document(tmp_path / "nope.yaml")
