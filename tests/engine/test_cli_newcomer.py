"""What a newcomer meets in the first hour, run as they run it: the turnout command
in a directory of their own (`turnout init`, a missing file, a busy port) and the
messages for the mistakes everyone makes once (indentation, typos, empty files)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def turnout(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "TURNOUT_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )


def write(tmp_path: Path, text: str) -> str:
    (tmp_path / "routes.yaml").write_text(textwrap.dedent(text))
    return "routes.yaml"


def test_init_writes_a_starter_policy_that_checks_and_answers_offline(tmp_path: Path) -> None:
    made = turnout("init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "routes.yaml").read_text()
    assert text.count("#") > 10, "the starter policy explains itself in comments"
    checked = turnout("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("routes.yaml: OK — 1 route, 2 providers")
    answered = turnout("chat", "--model", "smart", "hello there", cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "hello there"


def test_init_never_overwrites_a_policy_without_force(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("# mine\n")
    refused = turnout("init", cwd=tmp_path)
    assert refused.returncode != 0
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert (tmp_path / "routes.yaml").read_text() == "# mine\n"
    assert turnout("init", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "routes.yaml").read_text() != "# mine\n"


@pytest.mark.parametrize("command", [["serve"], ["check"], ["chat", "hi"]])
def test_a_missing_policy_says_where_it_looked_and_what_to_do(
    tmp_path: Path, command: list[str]
) -> None:
    result = turnout(*command, cwd=tmp_path)
    assert result.returncode == 1
    message = result.stderr
    assert "routes.yaml: file not found" in message
    assert str(tmp_path) in message
    assert "--config" in message and "turnout init" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_is_one_line_naming_the_address_and_port_flag(
    tmp_path: Path, workers: str
) -> None:
    turnout("init", cwd=tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = turnout("serve", "--port", str(port), "--workers", workers, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0] and "--port" in lines[0]
    assert "startup complete" not in result.stdout + result.stderr


def test_an_empty_policy_fails_check(tmp_path: Path) -> None:
    result = turnout("check", write(tmp_path, ""), cwd=tmp_path)
    assert result.returncode == 1
    assert "empty" in result.stderr and "turnout init" in result.stderr


def test_check_counts_in_good_english(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        """\
        version: 1
        providers:
          mock: {type: mock}
        routes:
          - {name: smart, match: {model: smart}, targets: [mock/echo]}
        """,
    )
    result = turnout("check", policy, cwd=tmp_path)
    assert result.stdout.startswith("routes.yaml: OK — 1 route, 1 provider\n"), result.stdout


def test_an_undeclared_mock_says_even_mock_must_be_declared(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        """\
        version: 1
        routes:
          - {name: smart, match: {model: smart}, targets: [mock/echo]}
        """,
    )
    result = turnout("check", policy, cwd=tmp_path)
    assert "routes.yaml:3:" in result.stderr
    assert "known providers: none" not in result.stderr
    assert "mock: {type: mock}" in result.stderr and "must be declared" in result.stderr


def test_a_dedented_provider_body_names_the_provider_and_the_shape(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        """\
        version: 1
        providers:
          mock:
          type: mock
        routes: []
        """,
    )
    result = turnout("check", policy, cwd=tmp_path)
    assert "routes.yaml:3:3: providers.mock is empty" in result.stderr
    assert "{type: ...}" in result.stderr and "indent" in result.stderr
    assert "ProviderConfig" not in result.stderr and "dictionary" not in result.stderr


def test_a_dedented_options_key_is_said_to_be_read_as_a_provider(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        """\
        version: 1
        providers:
          mock:
            type: mock
          options:
            script: []
        routes: []
        """,
    )
    result = turnout("check", policy, cwd=tmp_path)
    assert "routes.yaml:5:3:" in result.stderr
    assert "'options' is read as an entry named 'options' under providers" in result.stderr


def test_a_misindented_key_gets_an_indentation_hint(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        """\
        version: 1
        providers:
          mock:
            type: mock
           options: {}
        """,
    )
    result = turnout("check", policy, cwd=tmp_path)
    assert "routes.yaml:5:" in result.stderr
    assert "indentation" in result.stderr


def test_an_unknown_model_name_gets_a_did_you_mean(tmp_path: Path) -> None:
    turnout("init", cwd=tmp_path)
    result = turnout("plan", "--model", "smrat", cwd=tmp_path)
    assert result.returncode == 1
    assert "no route matches model 'smrat'; did you mean 'smart'?" in result.stderr
