"""The request log as an ordinary observer plugin: one structured line per request.

Each finished request (``turnout_request_finished``) becomes one structlog
event named ``request`` on the standard-library logger ``turnout.request``:
request id, route, requested and serving model, provider, status, latency,
the attempt trail, tokens, cost, and the cache / guardrail outcome when a
plugin reported one in ``ctx.cache`` / ``ctx.scratch["guardrail"]``.

Never logged: HTTP headers (so no ``Authorization``), API keys, and message
content — unless the policy sets ``gateway: {log_content: true}``, which adds
the request's messages (as guardrails redacted them) and, for non-streaming
responses, the reply text; never for a request a guardrail blocked.

Nothing is built or emitted unless ``turnout.request`` is enabled for INFO, so
an application using the engine as a library pays nothing and sees nothing
until it configures logging. ``turnout serve`` renders these events as JSON
lines (or readable console lines on a terminal).

Under ``turnout serve --log-format json`` (the default off a terminal) the
line skips the standard library: a structlog logger renders it with orjson
straight into the process's ``LineBuffer`` (``json_lines()``), which writes
the buffered lines at most half a second later, and when the engine closes
or the process exits (benchmarks/RESULTS.md, "Cheap observers"). Otherwise
the record is built directly, in the shape structlog's ``wrap_for_formatter``
gives it (the event dict as ``msg``, plus ``_logger`` and ``_name``), so any
``structlog.stdlib.ProcessorFormatter`` renders it.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from turnout.plugin_api import (
    AttemptRecord,
    RequestContext,
    RequestOutcome,
    hookimpl,
    json_lines,
)

__all__ = [
    "LOGGER_NAME",
    "request_fields",
    "turnout_engine_closed",
    "turnout_request_finished",
    "turnout_shadow_finished",
]

LOGGER_NAME = "turnout.request"

_stdlib = logging.getLogger(LOGGER_NAME)
_log = structlog.wrap_logger(
    _stdlib,
    wrapper_class=structlog.stdlib.BoundLogger,
    processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
)


def request_fields(ctx: RequestContext, outcome: RequestOutcome) -> dict[str, Any]:
    """The fields of one request's log line."""
    trail = ctx.trail
    served = trail[-1] if trail and outcome.status == "ok" else None
    fields: dict[str, Any] = {
        "request_id": ctx.request_id,
        "route": ctx.route.name,
        "model_requested": ctx.request.model,
        "provider": served.provider if served else None,
        "model": served.model if served else None,
        "status": outcome.status,
        "status_code": outcome.status_code,
        "latency_ms": round(outcome.latency_ms, 3),
        "stream": ctx.stream,
        "attempts": [f"{r.provider}/{r.model}:{r.outcome}" for r in trail],
    }
    usage = outcome.usage
    if usage is not None:
        fields["prompt_tokens"] = usage.prompt_tokens
        fields["completion_tokens"] = usage.completion_tokens
    if outcome.cost is not None:
        fields["cost_usd"] = outcome.cost
    cache = ctx.cache
    if cache is None and outcome.short_circuit:
        cache = "short_circuit"
    if cache is not None:
        fields["cache"] = cache
    guardrail = ctx.scratch.get("guardrail")
    if guardrail is not None:
        fields["guardrail"] = guardrail
    error = outcome.error
    if error is not None:
        fields["error_code"] = error.code
        fields["error"] = error.message
    if ctx.table.policy.gateway.log_content:
        if guardrail is not None and any(e.get("action") == "block" for e in guardrail):
            # what a guardrail refused (a key, a card number) is not written down either
            fields["content"] = "withheld: a guardrail blocked this request"
            return fields
        fields["messages"] = [m.model_dump(exclude_none=True) for m in ctx.request.messages]
        response = outcome.response
        if response is not None:
            fields["reply"] = [choice.message.content for choice in response.choices]
    return fields


_METHOD = {logging.INFO: "info", logging.WARNING: "warning"}


@hookimpl
def turnout_request_finished(ctx: RequestContext, outcome: RequestOutcome) -> None:
    if not _stdlib.isEnabledFor(logging.INFO):
        return
    lines = json_lines()
    if lines is not None:
        log = lines.logger(LOGGER_NAME)
        (log.info if outcome.status_code < 500 else log.warning)(
            "request", **request_fields(ctx, outcome)
        )
        return
    level = logging.INFO if outcome.status_code < 500 else logging.WARNING
    event = {"event": "request", **request_fields(ctx, outcome)}
    record = logging.getLogRecordFactory()(LOGGER_NAME, level, __file__, 0, event, (), None)
    record._logger = _log
    record._name = _METHOD[level]
    _stdlib.handle(record)


@hookimpl
def turnout_shadow_finished(ctx: RequestContext, record: AttemptRecord, cost: float | None) -> None:
    """One line per shadow request, beside the request it mirrored."""
    if not _stdlib.isEnabledFor(logging.INFO):
        return
    lines = json_lines()
    log = _log if lines is None else lines.logger(LOGGER_NAME)
    log.info(
        "shadow",
        request_id=ctx.request_id,
        route=ctx.route.name,
        provider=record.provider,
        model=record.model,
        outcome=record.outcome,
        status_code=record.status_code,
        latency_ms=record.latency_ms,
        cost=cost,
    )


@hookimpl
def turnout_engine_closed() -> None:
    """Write out the buffered lines: none is lost when the gateway shuts down."""
    lines = json_lines()
    if lines is not None:
        lines.flush()
