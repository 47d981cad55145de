"""Prometheus metrics as an ordinary observer plugin.

Records one request's route, serving provider and model, status, latency,
tokens, cost, and every upstream attempt of its trail (outcome, duration,
retries, fallbacks) when ``turnout_request_finished`` fires. The metrics
themselves are defined in ``turnout.metrics``; the gateway exposes them at
``GET /metrics``.
"""

from __future__ import annotations

from typing import Any

from turnout.contract.hookspecs import hookimpl
from turnout.metrics import (
    ATTEMPTS,
    COST,
    FALLBACKS,
    REQUEST_DURATION,
    REQUESTS,
    RETRIES,
    SHADOW_COST,
    SHADOW_DURATION,
    SHADOW_REQUESTS,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
    UPSTREAM_DURATION,
    bounded_model,
)
from turnout.run.context import RequestContext, RequestOutcome
from turnout.wire.chat import AttemptRecord

__all__ = ["turnout_request_finished", "turnout_shadow_finished"]

NO_PROVIDER = "none"
"""The provider label of a request no upstream answered (a cache hit, or
refused before any attempt)."""


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoised: label lookups are the costly part."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


@hookimpl
def turnout_request_finished(ctx: RequestContext, outcome: RequestOutcome) -> None:
    route = ctx.route.name
    trail = ctx.trail
    if trail and not outcome.short_circuit:
        last = trail[-1]
        provider, model = last.provider, bounded_model(last.model)
    else:
        provider, model = NO_PROVIDER, NO_PROVIDER
    _child(REQUESTS, route, provider, model, str(outcome.status_code)).inc()
    _child(REQUEST_DURATION, route).observe(outcome.latency_ms / 1000)

    previous: tuple[str, str] | None = None
    for record in trail:
        record_model = bounded_model(record.model)
        _child(ATTEMPTS, record.provider, record_model, record.outcome).inc()
        _child(UPSTREAM_DURATION, record.provider, record_model).observe(record.latency_ms / 1000)
        current = (record.provider, record.model)
        if previous is not None:
            _child(RETRIES if current == previous else FALLBACKS, route).inc()
        previous = current

    if outcome.status != "ok" or provider == NO_PROVIDER:
        return
    if ctx.stream:
        _child(TIME_TO_FIRST_TOKEN, provider, model).observe(trail[-1].latency_ms / 1000)
    usage = outcome.usage
    if usage is not None:
        _child(TOKENS, provider, model, "input").inc(usage.prompt_tokens)
        _child(TOKENS, provider, model, "output").inc(usage.completion_tokens)
    if outcome.cost:
        _child(COST, route, provider, model).inc(outcome.cost)


@hookimpl
def turnout_shadow_finished(ctx: RequestContext, record: AttemptRecord, cost: float | None) -> None:
    model = bounded_model(record.model)
    _child(SHADOW_REQUESTS, ctx.route.name, record.provider, model, record.outcome).inc()
    _child(SHADOW_DURATION, record.provider, model).observe(record.latency_ms / 1000)
    if cost:
        _child(SHADOW_COST, ctx.route.name, record.provider, model).inc(cost)
