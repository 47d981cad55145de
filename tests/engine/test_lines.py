"""The buffered JSON lines of ``turnout serve``: written within the interval,
in order with other records, and never lost by a clean close."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from turnout.lines import FLUSH_INTERVAL, LineBuffer

ROOT = Path(__file__).resolve().parents[2]


def written(path: Path) -> list[str]:
    return path.read_bytes().decode().splitlines()


async def test_a_line_is_written_after_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as stream:
        lines = LineBuffer(stream, interval=0.05)
        lines.msg(b'{"n":1}')
        lines.msg(b'{"n":2}')
        assert written(path) == []  # buffered: no write per line
        await asyncio.sleep(0.2)
        assert written(path) == ['{"n":1}', '{"n":2}']


async def test_a_full_buffer_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as stream:
        lines = LineBuffer(stream, interval=60, limit=40)
        for n in range(10):
            lines.msg(b'{"n":%d}' % n)  # 8 bytes with its newline: full every 5 lines
        assert written(path) == [f'{{"n":{n}}}' for n in range(10)]


async def test_another_record_is_written_after_the_buffered_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as stream:
        lines = LineBuffer(stream, interval=60)
        lines.msg(b"first")
        lines.write_now(b"second")
        assert written(path) == ["first", "second"]


def test_outside_an_event_loop_a_line_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as stream:
        LineBuffer(stream, interval=60).msg(b"now")
        assert written(path) == ["now"]


async def test_the_structlog_logger_writes_one_json_object_a_line(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as stream:
        lines = LineBuffer(stream, interval=60)
        lines.logger("turnout.request").warning("request", status_code=502, attempts=["a:x"])
        lines.flush()
        (line,) = written(path)
    event = json.loads(line)
    assert event["event"] == "request" and event["status_code"] == 502
    assert event["attempts"] == ["a:x"]
    assert event["logger"] == "turnout.request" and event["level"] == "warning"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["timestamp"])


def test_the_docs_state_the_crash_loss_bound_the_code_has() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    section = deploy[deploy.index("## Logs: buffered") :]
    assert f"at most **{FLUSH_INTERVAL:g} s**" in section
    assert f"request lines of the last {FLUSH_INTERVAL:g} s" in section


async def test_lines_are_written_whole_in_writes_a_pipe_keeps_in_one_piece() -> None:
    import select

    class Writes:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data: memoryview) -> int:
            self.writes.append(bytes(data))
            return len(data)

        def flush(self) -> None:
            pass

    stream = Writes()
    lines = LineBuffer(stream, interval=60, limit=1 << 20)  # type: ignore[arg-type]
    sent = [b'{"n":%d,"pad":"%s"}' % (n, b"x" * (n % 300)) for n in range(400)]
    for line in sent:
        lines.msg(line)
    assert stream.writes == []
    lines.flush()
    assert len(stream.writes) > 1
    assert all(len(w) <= select.PIPE_BUF and w.endswith(b"\n") for w in stream.writes)
    assert b"".join(stream.writes).splitlines() == sent


def test_a_stream_that_takes_part_of_a_write_still_gets_every_byte() -> None:
    class Partial:
        """An unbuffered stdout pipe (PYTHONUNBUFFERED) that takes 7 bytes a call."""

        def __init__(self) -> None:
            self.data = b""

        def write(self, data: memoryview) -> int:
            self.data += bytes(data[:7])
            return min(7, len(data))

        def flush(self) -> None:
            pass

    stream = Partial()
    lines = LineBuffer(stream)  # type: ignore[arg-type]
    lines.write_now(b'{"a":"' + b"x" * 50 + b'"}')
    lines.write_now(b"{}")
    assert stream.data == b'{"a":"' + b"x" * 50 + b'"}\n{}\n'


async def test_values_json_has_no_literal_for_are_still_written(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as stream:
        lines = LineBuffer(stream, interval=60)
        lines.logger("x").info("request", guardrail=[{1: "numbered"}], odd=object)
        lines.flush()
        (line,) = written(path)
    event = json.loads(line)
    assert event["guardrail"] == [{"1": "numbered"}] and "object" in event["odd"]
