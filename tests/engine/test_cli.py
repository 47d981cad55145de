"""The turnout command, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.engine.test_compile import FIVE_MISTAKES

ROOT = Path(__file__).resolve().parents[2]


def turnout(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})},
    )


def test_check_prints_every_mistake_with_its_line(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(FIVE_MISTAKES)
    result = turnout("check", str(policy))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "6 problems in policy"
    for line_no in (4, 9, 10, 11, 12, 13):
        assert any(f"{policy}:{line_no}:" in line for line in lines[1:]), line_no


def test_check_accepts_the_default_policy() -> None:
    result = turnout("check", "routes.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("routes.yaml: OK — 3 routes, 3 providers")
    assert "provider openai (API key not set" in result.stdout


def test_plan_explains_without_calling_anything() -> None:
    result = turnout(
        "plan",
        "routes.yaml",
        "--model",
        "smart",
        "--max-tokens",
        "100",
        env={"OPENAI_API_KEY": "sk-test"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    picked = next(line for line in lines if line.startswith("  1. "))
    assert "openai/gpt-4o" in picked and "weighted pick (" in picked
    assert any(line.startswith("  2. openai/gpt-4o") for line in lines)
    assert "mock/echo: route fallback #1" in result.stdout


def test_plan_with_a_huge_prompt_shows_the_cost_cap_at_work() -> None:
    result = turnout(
        "plan",
        "routes.yaml",
        "--model",
        "smart",
        "--prompt-tokens",
        "50000",
        "--max-tokens",
        "1000",
        "--json",
        env={"OPENAI_API_KEY": "sk-test"},
    )
    plan = json.loads(result.stdout)
    skipped = {s["target"]: s["reason"] for s in plan["skipped"]}
    assert skipped["openai/gpt-4o"] == "cost_cap"
    assert [a["target"] for a in plan["attempts"]][-1] == "mock/echo"


def test_plan_for_an_unknown_model_is_an_error() -> None:
    result = turnout("plan", "routes.yaml", "--model", "nothing")
    assert result.returncode == 1 and "no route matches model 'nothing'" in result.stderr


def test_schema_is_json_schema_of_the_policy() -> None:
    result = turnout("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "turnout routes.yaml"
    assert {"providers", "routes", "models", "defaults"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_chat_answers_from_the_mock_provider() -> None:
    result = turnout("chat", "--model", "resilient", "hello there")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello there"
    assert "flaky/echo:overloaded → flaky/echo:rate_limited → flaky/echo:ok" in result.stderr


KEYED = """\
version: 1
providers: {mock: {type: mock}, other: {type: mock}}
routes:
  - {name: chat, match: {model: chat}, targets: [mock/echo]}
  - {name: direct, match: {model: "*/*"}}
keys:
  salt: salt-for-the-cli-plan
  clients:
    app: {hash: "sha256:%s", models: [chat, "mock/*"]}
""" % ("0" * 64)


def test_plan_as_a_key_skips_the_request_fallbacks_it_may_not_have(tmp_path: Path) -> None:
    policy = tmp_path / "routes.yaml"
    policy.write_text(KEYED)
    args = ("plan", str(policy), "--model", "chat", "--fallback", "other/x", "--fallback", "mock/b")
    result = turnout(*args, "--key", "app")
    assert result.returncode == 0, result.stderr
    assert "other/x (request fallback): not_allowed: API key 'app' may not use" in result.stdout
    assert "  2. mock/b: request fallback #2" in result.stdout
    assert "not_allowed" not in turnout(*args).stdout  # without a key: every fallback
    refused = turnout("plan", str(policy), "--model", "other/x", "--key", "app")
    assert refused.returncode == 2 and "403" in refused.stderr
    assert "no key named 'nobody'" in turnout(*args, "--key", "nobody").stderr
