"""Log output of ``turnout serve``: JSON lines, or readable lines on a terminal.

Everything goes through the standard library's root logger with one
structlog ``ProcessorFormatter``, so the request log (``plugins.logging``),
the engine's own events and uvicorn's messages share one format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import pydantic_core
import structlog
import structlog.tracebacks

__all__ = ["LogFormat", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]


def _to_json(value: Any, **_: Any) -> str:
    return pydantic_core.to_json(value, fallback=str).decode()


def _drop_color_message(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    return event


def configure_logging(fmt: LogFormat = "auto", level: int = logging.INFO) -> None:
    """Send every log record to stdout in ``fmt`` (``auto``: console on a TTY, else JSON)."""
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: Any
    if fmt == "json":
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
    formatter = structlog.stdlib.ProcessorFormatter(
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
    handler = logging.StreamHandler(sys.stdout)
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
