"""Buffered JSON lines: the request log's way to stdout under ``turnout serve``.

A request's log line is serialised once (structlog's processors with an
orjson renderer) and appended to a ``LineBuffer``. The buffer writes its
lines together, at most ``FLUSH_INTERVAL`` seconds after the first of them
(an event-loop timer, no thread), as soon as it holds ``FLUSH_BYTES``,
whenever any other log record is written (so lines stay in order), and when
the engine closes or the process exits; whole lines, up to ``PIPE_BUF`` bytes
a ``write``, so workers sharing a pipe never interleave inside a line. A
process that is killed (SIGKILL, a crash of the interpreter) loses at most
the lines of the last interval.

``configure_logging("json")`` (``turnout serve``) installs one for stdout;
without it (the engine as a library) ``json_lines()`` is None and the request
log goes through the standard-library logger as before.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import select
import threading
import time
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

__all__ = ["FLUSH_BYTES", "FLUSH_INTERVAL", "LineBuffer", "json_lines", "use_json_lines"]

FLUSH_INTERVAL = 0.5
"""Seconds a buffered line waits at most before it is written."""

FLUSH_BYTES = 64 * 1024
"""Buffered bytes that are written at once, whatever the interval."""


def _dumps(value: Any, **kw: Any) -> bytes:
    # non-string keys (a plugin's scratch data) as strings, as the stdlib path writes them
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, **kw)


_PIPE_BUF = select.PIPE_BUF if hasattr(select, "PIPE_BUF") else 512


class _Stamp:
    """Adds ``logger``, ``level`` and an ISO 8601 UTC ``timestamp`` (as
    structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it, always with
    microseconds), formatting the date and time of day once a second."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event["logger"] = self.name
        event["level"] = "warning" if method == "warn" else method
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


class LineBuffer:
    """Lines for one binary stream, written together (see the module docstring).

    Also a structlog logger (its ``info`` / ``warning`` ... take one rendered
    line), so ``logger(name)`` is a structlog bound logger writing here.
    """

    def __init__(
        self, stream: BinaryIO, interval: float = FLUSH_INTERVAL, limit: int = FLUSH_BYTES
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.limit = limit
        self._pending: list[bytes] = []
        self._size = 0
        self._due: float | None = None
        """When the pending lines are written by the timer (monotonic), if scheduled."""
        self._lock = threading.Lock()
        self._loggers: dict[str, Any] = {}

    def msg(self, line: bytes) -> None:
        """Buffer one line (without its newline)."""
        with self._lock:
            self._pending.append(line)
            self._size += len(line) + 1
            due = self._due
            now = time.monotonic()
            if self._size < self.limit and (due is None or now < due + self.interval):
                if due is not None:
                    return
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # no loop to wait on: write now
                    pass
                else:
                    loop.call_later(self.interval, self.flush)
                    self._due = now + self.interval
                    return
            # full, outside an event loop, or a timer that never fired (its loop gone)
            self._write()

    info = warning = error = critical = debug = log = msg

    def write_now(self, line: bytes) -> None:
        """Write one line now, after the buffered ones."""
        with self._lock:
            self._pending.append(line)
            self._write()

    def flush(self) -> None:
        """Write the buffered lines."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        pending, self._pending, self._size, self._due = self._pending, [], 0, None
        if not pending:
            return
        # whole lines, at most PIPE_BUF bytes a write: the kernel keeps such a
        # write to a pipe in one piece, so workers sharing stdout never split a line
        chunks: list[list[bytes]] = []
        chunk: list[bytes] = []
        size = 0
        for line in pending:
            if chunk and size + len(line) + 1 > _PIPE_BUF:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        chunks.append(chunk)
        try:
            for lines in chunks:
                lines.append(b"")
                data = memoryview(b"\n".join(lines))
                while data:  # an unbuffered stdout (PYTHONUNBUFFERED) may take part of it
                    written: int | None = self.stream.write(data)
                    if written is None:  # a non-blocking stream that is full: drop the rest
                        break
                    data = data[written:]
                self.stream.flush()
        except (OSError, ValueError):  # stdout closed or gone: nowhere left to write
            pass

    def logger(self, name: str) -> Any:
        """A structlog logger named ``name`` writing JSON lines here: the event's
        keys, then ``logger``, ``level`` and ``timestamp`` (ISO 8601, UTC)."""
        log = self._loggers.get(name)
        if log is None:
            # bound once (.bind()), not a lazy proxy that binds again on every call
            log = self._loggers[name] = structlog.wrap_logger(
                self,
                processors=[
                    _Stamp(name),
                    structlog.processors.JSONRenderer(serializer=_dumps),
                ],
                wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            ).bind()
        return log


_active: LineBuffer | None = None


def json_lines() -> LineBuffer | None:
    """The process's JSON-lines buffer for stdout, if ``turnout serve`` set one up."""
    return _active


def use_json_lines(lines: LineBuffer | None) -> None:
    """Make ``lines`` the process's buffer (None: none), writing out the previous one."""
    global _active
    previous, _active = _active, lines
    if previous is not None:
        previous.flush()
        atexit.unregister(previous.flush)
    if lines is not None:
        atexit.register(lines.flush)
