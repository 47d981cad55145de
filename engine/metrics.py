"""The engine's own Prometheus metrics, and the exposition of an engine's.

Each engine has its own registry, ``Engine.metrics``; plugins create their
metrics on it from ``turnout_engine_started`` (requests, attempts, tokens and
cost in ``turnout.plugins.metrics``, the cache's and the guardrails' in
theirs). The gateway creates its own there too (``GatewayMetrics``: HTTP responses,
in-flight requests, overhead; and its reloader ``policy_reloads``). The
budget, breaker and state metrics of ``turnout.run``, defined below, are
still process-wide, on prometheus-client's default registry; ``exposition``
serves both.

Label values are bounded: routes and providers come from the policy, statuses
and failure classes from closed sets, and model names — which a caller can
choose freely on a direct route — pass through the engine's ``ModelLabels``,
which folds every name after its first ``MODEL_LABEL_LIMIT`` into ``"other"``.
No request ids or user ids are ever labels.

Several worker processes (``turnout serve --workers N``) share one exposition
through prometheus-client's multiprocess mode: the server sets
``PROMETHEUS_MULTIPROC_DIR`` before this module is imported, and ``exposition``
then merges every worker's files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Metric,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.registry import Collector
from turnout.plain_metrics import Level, MetricSet

__all__ = [
    "BREAKER_STATE",
    "BUDGET_REFUSALS",
    "BUDGET_REMAINING",
    "CONTENT_TYPE",
    "MODEL_LABEL_LIMIT",
    "STATE_ERRORS",
    "GatewayMetrics",
    "InFlight",
    "ModelLabels",
    "breaker_target",
    "exposition",
    "multiprocess_dir",
    "policy_reloads",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MODEL_LABEL_LIMIT = 500

_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

# -- budgets, rate limits and breakers (turnout.run.ledger) -----------------------

BUDGET_REMAINING = Gauge(
    "turnout_budget_remaining",
    "What is left of each budget and rate limit in its current window, in its unit "
    "(USD, tokens or requests); per-caller budgets (each key, user, ...) are not exported.",
    ["budget", "unit"],
    multiprocess_mode="mostrecent",
)
BUDGET_REFUSALS = Counter(
    "turnout_budget_refusals",
    "Attempts or requests refused because a budget or rate limit had no room, by budget.",
    ["budget"],
)
BREAKER_STATE = Gauge(
    "turnout_breaker_state",
    "Circuit breaker of each target as this process last saw it: 0 closed, 1 half-open, 2 open.",
    ["target"],  # through breaker_target: bounded
    multiprocess_mode="mostrecent",
)
STATE_ERRORS = Counter(
    "turnout_state_errors",
    "State backend failures, by backend and operation (budgets then fail closed and "
    "rate limits fail open, unless the policy says otherwise).",
    ["backend", "operation"],
)

# -- gateway (turnout.http) ---------------------------------------------------


InFlight = Level | Gauge
"""Requests in flight: a plain ``Level``, or a multiprocess ``Gauge``."""


class GatewayMetrics:
    """The gateway's metrics, on its engine's registry (one gateway per engine).

    Plain numbers read at scrape time (``turnout.plain_metrics``), updated and
    scraped on the event loop; prometheus-client's own objects in multiprocess
    mode. ``responses`` counts by (endpoint, status), ``overhead`` observes
    seconds (no labels), ``in_flight`` goes up and down."""

    def __init__(self, registry: CollectorRegistry) -> None:
        metrics = MetricSet(registry, multiprocess=bool(multiprocess_dir()))
        self.responses = metrics.counter(
            "turnout_http_responses",
            "HTTP responses of the gateway by endpoint and status, including requests "
            "rejected before routing (bad JSON, too large, unknown model).",
            ["endpoint", "status"],
        )
        self.in_flight: InFlight = metrics.level(
            "turnout_requests_in_flight", "Chat-completion requests the gateway is serving now."
        )
        self.overhead = metrics.histogram(
            "turnout_gateway_overhead_seconds",
            "Time the gateway added to a chat completion: everything but the upstream "
            "attempts (parsing, planning, hooks, retry backoff, serialisation).",
            [],
            _OVERHEAD,
        )
        metrics.register()


def policy_reloads(registry: CollectorRegistry) -> Counter:
    """``turnout_policy_reloads`` on an engine's registry (its reloader's)."""
    return Counter(
        "turnout_policy_reloads",
        'Policy reloads by result: "ok", or "rejected" (the old policy kept serving).',
        ["result"],
        registry=registry,
    )


class ModelLabels:
    """Model names as metric label values, for one engine's metrics.

    The first ``limit`` distinct names are kept as they are, every later one
    becomes ``"other"``. One per engine (its metrics plugin holds it), so a
    flood of names on one engine never folds another engine's models.
    """

    def __init__(self, limit: int = MODEL_LABEL_LIMIT) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, model: str) -> str:
        """``model`` as a label value, or ``"other"`` once the label is full."""
        if model in self._seen:
            return model
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(model)
                return model
        return "other"


breaker_target = ModelLabels()
"""Targets as ``turnout_breaker_state`` label values: the first ``MODEL_LABEL_LIMIT``
targets whose breaker moved keep their names, later ones are ``"other"``, so a
flood of model names on a direct route cannot add series without end."""


def multiprocess_dir() -> str | None:
    """The multiprocess directory if the process exports in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _Both(Collector):
    """The engine's registry and the process-wide one, as one collector."""

    def __init__(self, engine: CollectorRegistry) -> None:
        self._registries = (engine, REGISTRY)

    def collect(self) -> Iterator[Metric]:
        for registry in self._registries:
            yield from registry.collect()


def exposition(engine: CollectorRegistry) -> bytes:
    """The text exposition of an engine's metrics and the process-wide ones.

    In multiprocess mode every metric object writes its values to the shared
    directory whatever registry it is on, so this merges every worker's files.
    """
    if multiprocess_dir():
        merged = CollectorRegistry()
        _multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(_Both(engine))
