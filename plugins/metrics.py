"""Prometheus metrics as an ordinary observer plugin, one set per engine.

Records one request's route, serving provider and model, status, latency,
tokens, cost, and every upstream attempt of its trail (outcome, duration,
retries, fallbacks) when ``turnout_request_finished`` fires, and shadow
requests when ``turnout_shadow_finished`` does. The metrics are created on
the engine's own registry when it starts (``turnout_engine_started``); the
gateway exposes them at ``GET /metrics``.
"""

from __future__ import annotations

from typing import Any

import pluggy
from prometheus_client import CollectorRegistry, Counter, Histogram
from turnout.plugin_api import (
    AttemptRecord,
    ModelLabels,
    RequestContext,
    RequestOutcome,
    hookimpl,
)

__all__ = ["RequestMetrics", "turnout_engine_started"]

NO_PROVIDER = "none"
"""The provider label of a request no upstream answered (a cache hit, or
refused before any attempt)."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class RequestMetrics:
    """The request, attempt and shadow metrics of one engine, and the hooks that
    record them. Label children are memoised: label lookups are the costly part.
    Model labels are bounded per engine (``ModelLabels``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: list[str]) -> Histogram:
            return Histogram(name, doc, labels, buckets=LATENCY_BUCKETS, registry=registry)

        self.requests = counter(
            "turnout_requests",
            "Requests routed by the engine, by route, serving provider and model, and HTTP status.",
            ["route", "provider", "model", "status"],
        )
        self.request_duration = histogram(
            "turnout_request_duration_seconds",
            "End-to-end engine latency of a request (for streams: until the last chunk).",
            ["route"],
        )
        self.upstream_duration = histogram(
            "turnout_upstream_duration_seconds",
            "Duration of each upstream attempt (for streams: until its first chunk).",
            ["provider", "model"],
        )
        self.time_to_first_token = histogram(
            "turnout_time_to_first_token_seconds",
            "Time from sending a streaming attempt upstream to its first chunk, "
            "for attempts that served.",
            ["provider", "model"],
        )
        self.tokens = counter(
            "turnout_tokens",
            "Tokens billed by the attempt that served, by direction (input or output).",
            ["provider", "model", "direction"],
        )
        self.cost = counter(
            "turnout_cost_usd",
            "Cost in US dollars of the attempts that served, where the model is priced.",
            ["route", "provider", "model"],
        )
        self.attempts = counter(
            "turnout_attempts",
            'Upstream attempts by outcome: "ok" or the failure class.',
            ["provider", "model", "outcome"],
        )
        self.retries = counter(
            "turnout_retries",
            "Attempts that repeated the previous attempt's target (retries).",
            ["route"],
        )
        self.fallbacks = counter(
            "turnout_fallbacks",
            "Attempts that moved on to a different target than the previous attempt (fallbacks).",
            ["route"],
        )
        self.shadow_requests = counter(
            "turnout_shadow_requests",
            "Shadow (mirrored) requests by route, shadow provider and model, and outcome "
            '("ok" or the failure class); they never affect the caller.',
            ["route", "provider", "model", "outcome"],
        )
        self.shadow_duration = histogram(
            "turnout_shadow_duration_seconds",
            "Latency of shadow requests, by shadow provider and model.",
            ["provider", "model"],
        )
        self.shadow_cost = counter(
            "turnout_shadow_cost_usd",
            "USD spent on shadow requests, by route, shadow provider and model.",
            ["route", "provider", "model"],
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.model_label = ModelLabels()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @hookimpl
    def turnout_request_finished(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
        child = self._child
        route = ctx.route.name
        trail = ctx.trail
        if trail and not outcome.short_circuit:
            last = trail[-1]
            provider, model = last.provider, self.model_label(last.model)
        else:
            provider, model = NO_PROVIDER, NO_PROVIDER
        child(self.requests, route, provider, model, str(outcome.status_code)).inc()
        child(self.request_duration, route).observe(outcome.latency_ms / 1000)

        previous: tuple[str, str] | None = None
        for record in trail:
            record_model = self.model_label(record.model)
            child(self.attempts, record.provider, record_model, record.outcome).inc()
            child(self.upstream_duration, record.provider, record_model).observe(
                record.latency_ms / 1000
            )
            current = (record.provider, record.model)
            if previous is not None:
                child(self.retries if current == previous else self.fallbacks, route).inc()
            previous = current

        if outcome.status != "ok" or provider == NO_PROVIDER:
            return
        if ctx.stream:
            child(self.time_to_first_token, provider, model).observe(trail[-1].latency_ms / 1000)
        usage = outcome.usage
        if usage is not None:
            child(self.tokens, provider, model, "input").inc(usage.prompt_tokens)
            child(self.tokens, provider, model, "output").inc(usage.completion_tokens)
        if outcome.cost:
            child(self.cost, route, provider, model).inc(outcome.cost)

    @hookimpl
    def turnout_shadow_finished(
        self, ctx: RequestContext, record: AttemptRecord, cost: float | None
    ) -> None:
        model = self.model_label(record.model)
        route = ctx.route.name
        self._child(self.shadow_requests, route, record.provider, model, record.outcome).inc()
        self._child(self.shadow_duration, record.provider, model).observe(record.latency_ms / 1000)
        if cost:
            self._child(self.shadow_cost, route, record.provider, model).inc(cost)


@hookimpl
def turnout_engine_started(
    plugin_manager: pluggy.PluginManager, metrics: CollectorRegistry
) -> None:
    plugin_manager.register(RequestMetrics(metrics), name="turnout.plugins.metrics.requests")
