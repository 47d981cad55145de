"""Every Prometheus metric turnout exports, defined in this one module.

Engine-level metrics (requests by route/provider/model, tokens, cost, attempts)
are recorded by the ``turnout.plugins.metrics`` hook plugin; gateway-level ones (HTTP
responses, in-flight requests, overhead, policy reloads) by ``turnout.http``.

Label values are bounded: routes and providers come from the policy, statuses
and failure classes from closed sets, and model names — which a caller can
choose freely on a direct route — pass through ``bounded_model``, which folds
every name after the first ``MODEL_LABEL_LIMIT`` into ``"other"``. No request
ids or user ids are ever labels.

Several worker processes (``turnout serve --workers N``) share one exposition
through prometheus-client's multiprocess mode: the server sets
``PROMETHEUS_MULTIPROC_DIR`` before this module is imported, and ``exposition``
then merges every worker's files.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

__all__ = [
    "ATTEMPTS",
    "BREAKER_STATE",
    "BUDGET_REFUSALS",
    "BUDGET_REMAINING",
    "CACHE_ERRORS",
    "CACHE_LOOKUPS",
    "CONTENT_TYPE",
    "COST",
    "FALLBACKS",
    "GATEWAY_OVERHEAD",
    "GUARDRAIL_ACTIONS",
    "HTTP_RESPONSES",
    "IN_FLIGHT",
    "MODEL_LABEL_LIMIT",
    "POLICY_RELOADS",
    "REQUESTS",
    "REQUEST_DURATION",
    "RETRIES",
    "STATE_ERRORS",
    "TIME_TO_FIRST_TOKEN",
    "TOKENS",
    "UPSTREAM_DURATION",
    "bounded_model",
    "exposition",
    "multiprocess_dir",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MODEL_LABEL_LIMIT = 500

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

# -- engine: one observation per request or attempt (turnout.plugins.metrics) ---------

REQUESTS = Counter(
    "turnout_requests",
    "Requests routed by the engine, by route, serving provider and model, and HTTP status.",
    ["route", "provider", "model", "status"],
)
REQUEST_DURATION = Histogram(
    "turnout_request_duration_seconds",
    "End-to-end engine latency of a request (for streams: until the last chunk).",
    ["route"],
    buckets=_LATENCY,
)
UPSTREAM_DURATION = Histogram(
    "turnout_upstream_duration_seconds",
    "Duration of each upstream attempt (for streams: until its first chunk).",
    ["provider", "model"],
    buckets=_LATENCY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "turnout_time_to_first_token_seconds",
    "Time from sending a streaming attempt upstream to its first chunk, for attempts that served.",
    ["provider", "model"],
    buckets=_LATENCY,
)
TOKENS = Counter(
    "turnout_tokens",
    "Tokens billed by the attempt that served, by direction (input or output).",
    ["provider", "model", "direction"],
)
COST = Counter(
    "turnout_cost_usd",
    "Cost in US dollars of the attempts that served, where the model is priced.",
    ["route", "provider", "model"],
)
ATTEMPTS = Counter(
    "turnout_attempts",
    'Upstream attempts by outcome: "ok" or the failure class.',
    ["provider", "model", "outcome"],
)
RETRIES = Counter(
    "turnout_retries",
    "Attempts that repeated the previous attempt's target (retries).",
    ["route"],
)
FALLBACKS = Counter(
    "turnout_fallbacks",
    "Attempts that moved on to a different target than the previous attempt (fallbacks).",
    ["route"],
)

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
    ["target"],
    multiprocess_mode="mostrecent",
)
STATE_ERRORS = Counter(
    "turnout_state_errors",
    "State backend failures, by backend and operation (budgets then fail closed and "
    "rate limits fail open, unless the policy says otherwise).",
    ["backend", "operation"],
)

SHADOW_REQUESTS = Counter(
    "turnout_shadow_requests",
    "Shadow (mirrored) requests by route, shadow provider and model, and outcome "
    '("ok" or the failure class); they never affect the caller.',
    ["route", "provider", "model", "outcome"],
)
SHADOW_DURATION = Histogram(
    "turnout_shadow_duration_seconds",
    "Latency of shadow requests, by shadow provider and model.",
    ["provider", "model"],
    buckets=_LATENCY,
)
SHADOW_COST = Counter(
    "turnout_shadow_cost_usd",
    "USD spent on shadow requests, by route, shadow provider and model.",
    ["route", "provider", "model"],
)

# -- hook plugins: response cache (turnout.plugins.cache), guardrails (turnout.plugins.guardrails)

CACHE_LOOKUPS = Counter(
    "turnout_cache_lookups",
    'Response cache lookups by route and result: "hit", "miss", or "bypass" '
    "(not cacheable, or the caller said no-cache).",
    ["route", "result"],
)
CACHE_ERRORS = Counter(
    "turnout_cache_errors",
    "Cache backend failures (each one served as a miss, or not stored), by backend "
    'and operation ("get" or "set").',
    ["backend", "operation"],
)
GUARDRAIL_ACTIONS = Counter(
    "turnout_guardrail_actions",
    "Guardrail findings acted on, by route, guardrail, direction (input or output) and "
    'action ("block", "redact", "log", "retry", "fallback", or "error" when it failed).',
    ["route", "guardrail", "direction", "action"],
)

# -- gateway (turnout.http) ---------------------------------------------------

HTTP_RESPONSES = Counter(
    "turnout_http_responses",
    "HTTP responses of the gateway by endpoint and status, including requests "
    "rejected before routing (bad JSON, too large, unknown model).",
    ["endpoint", "status"],
)
IN_FLIGHT = Gauge(
    "turnout_requests_in_flight",
    "Chat-completion requests the gateway is serving now.",
    multiprocess_mode="livesum",
)
GATEWAY_OVERHEAD = Histogram(
    "turnout_gateway_overhead_seconds",
    "Time the gateway added to a chat completion: everything but the upstream "
    "attempts (parsing, planning, hooks, retry backoff, serialisation).",
    buckets=_OVERHEAD,
)
POLICY_RELOADS = Counter(
    "turnout_policy_reloads",
    'Policy reloads by result: "ok", or "rejected" (the old policy kept serving).',
    ["result"],
)

_models: set[str] = set()
_models_lock = threading.Lock()


def bounded_model(model: str) -> str:
    """``model`` as a label value, or ``"other"`` once the label is full."""
    if model in _models:
        return model
    with _models_lock:
        if len(_models) < MODEL_LABEL_LIMIT:
            _models.add(model)
            return model
    return "other"


def multiprocess_dir() -> str | None:
    """The multiprocess directory if the process exports in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def exposition() -> bytes:
    """The text exposition of every metric (merged across workers in multiprocess mode)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
