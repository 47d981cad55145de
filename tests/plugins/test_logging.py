"""The request-log plugin: one structured line per request, no secrets, no content."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from turnout import Engine, TurnoutError
from turnout.lines import use_json_lines
from turnout.plugin_api import LineBuffer
from turnout.plugins.logging import LOGGER_NAME

POLICY = """\
version: 1
gateway: {{log_content: {content}}}
providers:
  mock: {{type: mock}}
  down: {{type: mock, options: {{script: [{{fail: server_error}}], repeat: true}}}}
"""

SECRET = "Bearer sk-do-not-log-me"
HI = [{"role": "user", "content": "my private question"}]


@pytest.fixture
def lines() -> Iterator[list[dict[str, object]]]:
    records: list[dict[str, object]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(json.loads(self.format(record)))

    handler = Capture()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ]
        )
    )
    logger = logging.getLogger(LOGGER_NAME)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def test_one_line_per_request_without_headers_or_content(
    lines: list[dict[str, object]],
) -> None:
    engine = Engine.from_yaml(POLICY.format(content="false"), autoload=False)
    await engine.chat(
        {"model": "mock/echo", "messages": HI},
        headers={"authorization": SECRET},
        request_id="req-1",
    )
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request"
    assert line["request_id"] == "req-1"
    assert line["route"] == "direct"
    assert line["provider"] == "mock" and line["model"] == "echo"
    assert line["status_code"] == 200
    assert line["attempts"] == ["mock/echo:ok"]
    assert line["prompt_tokens"] == 3
    text = json.dumps(line)
    assert "sk-do-not-log-me" not in text
    assert "private question" not in text


async def test_errors_are_logged_with_their_code(lines: list[dict[str, object]]) -> None:
    engine = Engine.from_yaml(POLICY.format(content="false"), autoload=False)
    with pytest.raises(TurnoutError):
        await engine.chat({"model": "down/x", "messages": HI})
    assert lines[-1]["status_code"] == 502
    assert lines[-1]["error_code"] == "server_error"
    assert lines[-1]["provider"] is None


async def test_content_is_logged_only_when_the_policy_says_so(
    lines: list[dict[str, object]],
) -> None:
    engine = Engine.from_yaml(POLICY.format(content="true"), autoload=False)
    await engine.chat({"model": "mock/echo", "messages": HI})
    assert lines[-1]["messages"] == [{"role": "user", "content": "my private question"}]
    assert lines[-1]["reply"] == ["my private question"]


async def test_nothing_is_built_when_the_logger_is_off() -> None:
    engine = Engine.from_yaml(POLICY.format(content="false"), autoload=False)
    assert not logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)
    await engine.chat({"model": "mock/echo", "messages": HI})


@pytest.fixture
def json_file(tmp_path: Path) -> Iterator[Path]:
    """The request log as ``turnout serve --log-format json`` writes it, to a file,
    with an interval long enough that only a close writes it."""
    path = tmp_path / "requests.log"
    logger = logging.getLogger(LOGGER_NAME)
    old_level = logger.level
    with path.open("wb") as stream:
        use_json_lines(LineBuffer(stream, interval=3600))
        logger.setLevel(logging.INFO)
        try:
            yield path
        finally:
            use_json_lines(None)
            logger.setLevel(old_level)


def logged(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


async def test_closing_the_engine_writes_the_buffered_lines(json_file: Path) -> None:
    engine = Engine.from_yaml(POLICY.format(content="false"), autoload=False)
    for n in range(3):
        await engine.chat({"model": "mock/echo", "messages": HI}, request_id=f"req-{n}")
    assert logged(json_file) == []  # still buffered
    await engine.aclose()
    lines = logged(json_file)
    assert [line["request_id"] for line in lines] == ["req-0", "req-1", "req-2"]
    assert all(line["event"] == "request" and line["level"] == "info" for line in lines)
    assert lines[0]["attempts"] == ["mock/echo:ok"] and lines[0]["prompt_tokens"] == 3
    assert "private question" not in json_file.read_text()


async def test_buffered_lines_keep_the_content_rules(json_file: Path) -> None:
    engine = Engine.from_yaml(POLICY.format(content="true"), autoload=False)
    with pytest.raises(TurnoutError):
        await engine.chat({"model": "down/x", "messages": HI})
    await engine.chat({"model": "mock/echo", "messages": HI})
    await engine.aclose()
    failed, served = logged(json_file)
    assert failed["level"] == "warning" and failed["error_code"] == "server_error"
    assert served["messages"] == [{"role": "user", "content": "my private question"}]
    assert served["reply"] == ["my private question"]
