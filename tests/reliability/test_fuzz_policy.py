"""Fuzzing the policy loader: no document makes load + compile (what `turnout
check` runs) crash; every rejection is a PolicyError whose problems name a line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from turnout.contract.registry import collect_registry, make_plugin_manager
from turnout.errors import PolicyError
from turnout.policy.compile import compile_policy
from turnout.policy.loader import parse_document

ROOT = Path(__file__).resolve().parents[2]
ROUTES = (ROOT / "routes.yaml").read_text()
REGISTRY = collect_registry(make_plugin_manager())
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.timeout(120)


def check(text: str) -> None:
    """What `turnout check` does with a file's text; fails the test on a crash or
    on a rejection that does not say where."""
    try:
        document = parse_document(text, file="routes.yaml", env={})
        compile_policy(document, REGISTRY.providers, REGISTRY.strategies, REGISTRY.guardrails)
    except PolicyError as exc:
        assert exc.problems, "a PolicyError lists at least one problem"
        for problem in exc.problems:
            assert problem.file == "routes.yaml"
            assert problem.line is not None and problem.line >= 1, str(problem)
            assert problem.message


def test_the_default_policy_compiles() -> None:
    check(ROUTES)


# -- YAML-ish documents ------------------------------------------------------

_KEYS = st.sampled_from(
    ["version", "providers", "models", "defaults", "routes", "gateway", "keys", "state",
     "name", "match", "model", "targets", "fallbacks", "retry", "timeout", "type", "weight",
     "api_key", "base_url", "options", "attempts", "backoff", "total", "first_token",
     "cost_cap", "budget", "cache", "guardrails", "strategy", "on", "limit", "window", "x"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True),
    st.sampled_from(["mock", "mock/echo", "openai", "1s", "-1ms", "${X}", "${X:-mock}", "*/*",
                     "5xx", "[", "{", "&a", "*a", "!!python/object:os.system", "0x1F", "1e999"]),
    st.text(max_size=20),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)


def _yaml(value: object, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "\n" + "\n".join(f"{pad}{k}: {_yaml(v, indent + 2)}" for k, v in value.items())
    if isinstance(value, list):
        if not value:
            return "[]"
        return "\n" + "\n".join(f"{pad}- {_yaml(v, indent + 2).lstrip()}" for v in value)
    if value is None:
        return "null"
    return str(value)


@FUZZ
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_generated_documents_never_crash_the_loader(document: dict[str, object]) -> None:
    check(_yaml(document).lstrip("\n"))


@FUZZ
@given(st.text(max_size=300))
@example("!0")  # a bare tagged scalar: ruamel gives it a position of None
@example("- !x\n")
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    check(text)


# -- mutations of the default routes.yaml ------------------------------------

_LINES = ROUTES.splitlines()


@st.composite
def mutated_routes(draw: st.DrawFn) -> str:
    lines = list(_LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "swap", "indent", "dedent", "replace",
                                       "truncate", "insert"]))  # fmt: skip
        line = lines[index]
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, line)
        elif action == "swap" and index + 1 < len(lines):
            lines[index], lines[index + 1] = lines[index + 1], line
        elif action == "indent":
            lines[index] = " " * draw(st.integers(1, 3)) + line
        elif action == "dedent":
            lines[index] = line.lstrip()
        elif action == "replace" and line.strip():
            token = draw(st.sampled_from(line.replace(",", " ").split()))
            new = draw(_SCALARS.map(str) | st.sampled_from(["", ":", "- ", "{}", "[]"]))
            lines[index] = line.replace(token, new, 1)
        elif action == "truncate":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        elif action == "insert":
            lines.insert(index, draw(st.text(max_size=30)))
        if not lines:
            break
    return "\n".join(lines) + "\n"


HALF_EDITED = ROUTES.replace(
    "  mock/premium: {input_per_mtok: 5, output_per_mtok: 15, context_window: 8192}",
    "  mock/premium",
)
"""What the fuzzer found (``--hypothesis-seed=22``): a key with a trailing comment,
a bare value on the next line, then a blank line; ruamel's round-trip parser
raised "overlap in comment [CommentToken(...)]" with no line."""


@FUZZ
@given(mutated_routes())
@example(HALF_EDITED)
def test_mutated_routes_yaml_never_crashes_the_loader(text: str) -> None:
    check(text)


def test_a_half_edited_line_under_a_commented_key_is_reported_where_it_is() -> None:
    assert HALF_EDITED != ROUTES
    with pytest.raises(PolicyError) as caught:
        check_raising(HALF_EDITED)
    (problem,) = caught.value.problems
    line = ROUTES.splitlines().index(
        next(x for x in ROUTES.splitlines() if x.startswith("models:"))
    )
    assert (problem.file, problem.line) == ("routes.yaml", line + 1)
    assert "models" in problem.message and "mapping" in problem.message
    assert "CommentToken" not in str(problem) and "overlap" not in str(problem)


def test_a_trailing_comment_before_a_bare_value_parses_as_yaml_means() -> None:
    document = parse_document("a:   # note\n  b\n\nc: 1  # more\n", file="x.yaml", env={})
    assert document.data == {"a": "b", "c": 1}
    assert document.locate(("c",)) == (4, 1)


def check_raising(text: str) -> None:
    document = parse_document(text, file="routes.yaml", env={})
    compile_policy(document, REGISTRY.providers, REGISTRY.strategies, REGISTRY.guardrails)


def test_a_control_character_is_reported_at_its_line_and_column() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_document("version: 1\nroutes: a\x1fb\n", file="routes.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (2, 10)
    assert "U+001F" in problem.message


@pytest.mark.parametrize(("profile", "derandomized"), [(None, True), ("explore", False)])
def test_the_test_command_runs_hypothesis_derandomized_unless_asked_to_explore(
    profile: str | None, derandomized: bool
) -> None:
    """CI (the README's `bash scripts/test.sh`) gets the same examples every run;
    TURNOUT_HYPOTHESIS=explore gets fresh random ones."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", **({"TURNOUT_HYPOTHESIS": profile} if profile else {})}
    code = (
        "import tests.conftest; from hypothesis import settings; "
        "print(settings.default.derandomize, settings.default.database is None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.stdout.split() == [str(derandomized), str(derandomized)], result.stderr
