"""Prometheus metrics as an ordinary observer plugin, one set per engine.

Records one request's route, serving provider and model, status, latency,
tokens, cost, and every upstream attempt of its trail (outcome, duration,
retries, fallbacks) when ``turnout_request_finished`` fires, and shadow
requests when ``turnout_shadow_finished`` does. The metrics are registered on
the engine's own registry when it starts (``turnout_engine_started``); the
gateway exposes them at ``GET /metrics``.

A request only adds to plain numbers that one collector turns into metric
families when ``/metrics`` is scraped (``turnout.plain_metrics``, through
``turnout.plugin_api``); with ``PROMETHEUS_MULTIPROC_DIR`` set (``turnout serve
--workers N``) the same metrics are prometheus-client ``Counter`` /
``Histogram`` objects instead.
"""

from __future__ import annotations

import os
import threading

import pluggy
from prometheus_client import CollectorRegistry
from turnout.plugin_api import (
    AttemptRecord,
    Family,
    MetricSet,
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
    record them. Model labels are bounded per engine (``ModelLabels``)."""

    def __init__(self, registry: CollectorRegistry, *, multiprocess: bool = False) -> None:
        # one request's updates are made under one lock, so a scrape (or an
        # engine shared by threads) never sees half of a request or loses one
        self._lock = threading.Lock()
        metrics = MetricSet(registry, multiprocess=multiprocess, lock=self._lock)
        counter = metrics.counter

        def histogram(name: str, doc: str, labels: list[str]) -> Family:
            return metrics.histogram(name, doc, labels, LATENCY_BUCKETS)

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
        self.model_label = ModelLabels()
        metrics.register()

    @hookimpl
    def turnout_request_finished(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
        route = ctx.route.name
        trail = ctx.trail
        label = self.model_label
        if trail and not outcome.short_circuit:
            last = trail[-1]
            provider, model = last.provider, label(last.model)
        else:
            provider, model = NO_PROVIDER, NO_PROVIDER
        attempts = [(r.provider, r.model, label(r.model), r) for r in trail]
        with self._lock:
            self.requests.add((route, provider, model, str(outcome.status_code)), 1)
            self.request_duration.add((route,), outcome.latency_ms / 1000)

            previous: tuple[str, str] | None = None
            for record_provider, record_model, model_label, record in attempts:
                self.attempts.add((record_provider, model_label, record.outcome), 1)
                self.upstream_duration.add((record_provider, model_label), record.latency_ms / 1000)
                current = (record_provider, record_model)
                if previous is not None:
                    (self.retries if current == previous else self.fallbacks).add((route,), 1)
                previous = current

            if outcome.status != "ok" or provider == NO_PROVIDER:
                return
            if ctx.stream:
                self.time_to_first_token.add((provider, model), trail[-1].latency_ms / 1000)
            usage = outcome.usage
            if usage is not None:
                self.tokens.add((provider, model, "input"), usage.prompt_tokens)
                self.tokens.add((provider, model, "output"), usage.completion_tokens)
            if outcome.cost:
                self.cost.add((route, provider, model), outcome.cost)

    @hookimpl
    def turnout_shadow_finished(
        self, ctx: RequestContext, record: AttemptRecord, cost: float | None
    ) -> None:
        model = self.model_label(record.model)
        route = ctx.route.name
        with self._lock:
            self.shadow_requests.add((route, record.provider, model, record.outcome), 1)
            self.shadow_duration.add((record.provider, model), record.latency_ms / 1000)
            if cost:
                self.shadow_cost.add((route, record.provider, model), cost)


@hookimpl
def turnout_engine_started(
    plugin_manager: pluggy.PluginManager, metrics: CollectorRegistry
) -> None:
    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    plugin_manager.register(
        RequestMetrics(metrics, multiprocess=multiprocess), name="turnout.plugins.metrics.requests"
    )
