"""Prometheus metrics as an ordinary observer plugin.

Records one request's route, serving provider and model, status, latency,
tokens, cost, and every upstream attempt of its trail (outcome, duration,
retries, fallbacks) when ``turnout_request_finished`` fires. The metrics
themselves are defined in ``engine.metrics``; the gateway exposes them at
``GET /metrics``.
"""

from __future__ import annotations

from engine.context import RequestContext, RequestOutcome
from engine.hookspecs import hookimpl
from engine.metrics import (
    ATTEMPTS,
    COST,
    FALLBACKS,
    REQUEST_DURATION,
    REQUESTS,
    RETRIES,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
    UPSTREAM_DURATION,
    bounded_model,
)

__all__ = ["turnout_request_finished"]

NO_PROVIDER = "none"
"""The provider label of a request no upstream answered (a cache hit, or
refused before any attempt)."""


@hookimpl
def turnout_request_finished(ctx: RequestContext, outcome: RequestOutcome) -> None:
    route = ctx.route.name
    trail = ctx.trail
    if trail and not outcome.short_circuit:
        last = trail[-1]
        provider, model = last.provider, bounded_model(last.model)
    else:
        provider, model = NO_PROVIDER, NO_PROVIDER
    REQUESTS.labels(route, provider, model, str(outcome.status_code)).inc()
    REQUEST_DURATION.labels(route).observe(outcome.latency_ms / 1000)

    previous: tuple[str, str] | None = None
    for record in trail:
        record_model = bounded_model(record.model)
        ATTEMPTS.labels(record.provider, record_model, record.outcome).inc()
        UPSTREAM_DURATION.labels(record.provider, record_model).observe(record.latency_ms / 1000)
        current = (record.provider, record.model)
        if previous is not None:
            (RETRIES if current == previous else FALLBACKS).labels(route).inc()
        previous = current

    if outcome.status != "ok" or provider == NO_PROVIDER:
        return
    if ctx.stream:
        TIME_TO_FIRST_TOKEN.labels(provider, model).observe(trail[-1].latency_ms / 1000)
    usage = outcome.usage
    if usage is not None:
        TOKENS.labels(provider, model, "input").inc(usage.prompt_tokens)
        TOKENS.labels(provider, model, "output").inc(usage.completion_tokens)
    if outcome.cost:
        COST.labels(route, provider, model).inc(outcome.cost)
