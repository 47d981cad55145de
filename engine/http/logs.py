"""Log output of ``turnout serve``: JSON lines, or readable lines on a terminal.

Everything goes through the standard library's root logger with one
structlog ``ProcessorFormatter``, so the request log (``turnout.plugins.logging``),
the engine's own events and uvicorn's messages share one format. In JSON, stdout
is a ``turnout.lines.LineBuffer``: the request log writes its pre-serialised
lines there directly (buffered, written at most ``FLUSH_INTERVAL`` seconds
later), every other record is written at once, after them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal

import pydantic_core
import structlog
import structlog.tracebacks
from turnout.lines import LineBuffer, use_json_lines

__all__ = ["LogFormat", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]


def _to_json(value: Any, **_: Any) -> str:
    return pydantic_core.to_json(value, fallback=str).decode()


def _drop_color_message(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    return event


_NOT_PLAIN = ("exc_info", "exception", "stack_info")


class _JSONLineFormatter(structlog.stdlib.ProcessorFormatter):
    """``ProcessorFormatter`` with a direct path for plain structlog events.

    An event with no exception or stack attached (the request log, every
    line of a healthy gateway) is rendered here with the same keys, in the
    same order, as the processor chain would produce, without copying the
    record or walking the chain; anything else takes the chain.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = record.msg
        if (
            type(event) is dict
            and not record.exc_info
            and not record.stack_info
            and getattr(record, "_logger", None) is not None
            and not any(key in event for key in _NOT_PLAIN)
        ):
            out = {**event, "logger": record.name}
            out.pop("color_message", None)
            out["level"] = record.levelname.lower()
            out["timestamp"] = (
                datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
            )
            return _to_json(out)
        return super().format(record)


class _LinesHandler(logging.Handler):
    """Writes each record at once to a ``LineBuffer``, after the lines it holds."""

    def __init__(self, lines: LineBuffer) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.write_now(self.format(record).encode())
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.lines.flush()


def configure_logging(fmt: LogFormat = "auto", level: int = logging.INFO) -> None:
    """Send every log record to stdout in ``fmt`` (``auto``: console on a TTY, else JSON)."""
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: Any
    formatter_type = structlog.stdlib.ProcessorFormatter
    if fmt == "json":
        formatter_type = _JSONLineFormatter
        renderer = structlog.processors.JSONRenderer(serializer=_to_json)
        # no local variables in tracebacks: they can hold API keys
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        tracebacks: list[Any] = [structlog.processors.ExceptionRenderer(transformer)]
    else:
        renderer = structlog.dev.ConsoleRenderer()
        tracebacks = []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = formatter_type(
        processors=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tracebacks,
            renderer,
        ],
        foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
    )
    stream = getattr(sys.stdout, "buffer", None) if fmt == "json" else None
    handler: logging.Handler
    if stream is not None:
        sys.stdout.flush()
        lines = LineBuffer(stream)
        handler = _LinesHandler(lines)
        use_json_lines(lines)
    else:
        handler = logging.StreamHandler(sys.stdout)
        use_json_lines(None)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx2 logs every upstream request at INFO: a second line per request
    # (and CPU on the hot path) that the request log already covers.
    for name in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
