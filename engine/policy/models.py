"""The policy schema: what routes.yaml may say, as frozen pydantic models.

Validation here is per field (types, ranges, unknown keys, durations);
cross-references between sections are checked in ``compile``.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from turnout.errors import FailureClass
from turnout.policy.limit_models import (
    Breaker,
    Budget,
    BudgetLimits,
    Keys,
    RateLimit,
    RateLimitRule,
    StateConfig,
)
from turnout.policy.units import Duration, Strict

__all__ = [
    "ApiKey",
    "CacheConfig",
    "Condition",
    "CostCap",
    "Defaults",
    "Gateway",
    "GuardrailSpec",
    "Match",
    "ModelOverride",
    "Policy",
    "ProviderConfig",
    "ProviderTimeouts",
    "Retry",
    "Route",
    "Shadow",
    "StrategySpec",
    "Target",
    "Timeout",
]


class ApiKey(Strict):
    """One of several API keys of a provider; requests are spread by weight."""

    key: str
    weight: float = Field(1.0, gt=0)


class ProviderTimeouts(Strict):
    connect: Duration = 5.0
    read: Duration = 60.0


class ProviderConfig(Strict):
    """A named instance of a provider type (``openai``, ``mock``, ...)."""

    type: str
    base_url: str | None = None
    api_key: str | None = None
    api_keys: list[ApiKey] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: ProviderTimeouts = ProviderTimeouts()
    max_connections: int = Field(100, ge=1)
    raw_response: bool = False
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    native: list[str] = Field(
        default_factory=list,
        description="inbound surfaces this upstream serves itself, beyond what its type "
        "always does: e.g. [completions] for a vLLM or Ollama base_url; requests on them "
        "go upstream as the caller wrote them instead of translated to chat",
    )


class ModelOverride(Strict):
    """Prices and limits of one ``provider/model``, overriding the bundled catalog."""

    input_per_mtok: float | None = Field(None, ge=0)
    output_per_mtok: float | None = Field(None, ge=0)
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)


def _target_shorthand(value: Any) -> Any:
    return {"model": value} if isinstance(value, str) else value


class _TargetFields(Strict):
    model: str = Field(description='"provider/model": a provider instance name and its model')
    weight: float = Field(1.0, gt=0)

    @field_validator("model")
    @classmethod
    def _provider_slash_model(cls, value: str) -> str:
        provider, slash, model = value.partition("/")
        if not (provider and slash and model):
            raise ValueError(f"{value!r} is not of the form provider/model")
        return value


Target = Annotated[_TargetFields, BeforeValidator(_target_shorthand)]

Patterns = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


_OPERATORS = ("eq", "ne", "in", "not_in", "regex", "gt", "gte", "lt", "lte", "exists")


class Condition(Strict):
    """One test on a request field; exactly one operator.

    ``field``: ``model``, ``user``, ``stream``, ``prompt_tokens`` (the estimate),
    ``max_tokens`` (the caller's output limit), ``messages`` (their count),
    ``metadata.<key>``, ``header.<name>``, or any other top-level request field.
    """

    field: str = Field(min_length=1)
    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(None, alias="in")
    not_in: list[Any] | None = None
    regex: str | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    exists: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [op for op in _OPERATORS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a condition takes exactly one operator of {', '.join(_OPERATORS)}; "
                f"got {', '.join(given) or 'none'}"
            )
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self

    @property
    def operator(self) -> tuple[str, Any]:
        for op in _OPERATORS:
            value = getattr(self, "in_" if op == "in" else op)
            if value is not None:
                return op, value
        raise AssertionError("validated to have one operator")


class Match(Strict):
    """When a route applies. Every given condition must hold; values may be globs."""

    model: Patterns | None = None
    user: Patterns | None = None
    metadata: dict[str, Patterns] = Field(default_factory=dict)
    headers: dict[str, Patterns] = Field(default_factory=dict)
    when: list[Condition] = Field(default_factory=list)


_RETRY_SHORTHANDS: dict[str, tuple[FailureClass, ...]] = {
    "429": (FailureClass.RATE_LIMITED,),
    "529": (FailureClass.OVERLOADED,),
    "503": (FailureClass.OVERLOADED,),
    "5xx": (FailureClass.SERVER_ERROR, FailureClass.OVERLOADED),
    "timeout": (FailureClass.TIMEOUT,),
}
_RETRYABLE = {
    FailureClass.RATE_LIMITED,
    FailureClass.OVERLOADED,
    FailureClass.SERVER_ERROR,
    FailureClass.TIMEOUT,
    FailureClass.CONNECTION,
}


def _failure_classes(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    out: list[FailureClass] = []
    for item in value:
        name = str(item).lower()
        if name in _RETRY_SHORTHANDS:
            out.extend(_RETRY_SHORTHANDS[name])
            continue
        try:
            failure = FailureClass(name)
        except ValueError:
            choices = ", ".join(sorted([*_RETRY_SHORTHANDS, *(f.value for f in _RETRYABLE)]))
            raise ValueError(f"unknown failure {item!r}; use any of {choices}") from None
        if failure not in _RETRYABLE:
            raise ValueError(f"{failure.value} is never retried: retrying cannot change the answer")
        out.append(failure)
    return list(dict.fromkeys(out))


class Retry(Strict):
    """Retries of one target before moving to the next attempt."""

    attempts: int = Field(1, ge=1, le=10, description="tries per target, the first included")
    backoff: Duration = 0.25
    max_backoff: Duration = 4.0
    jitter: bool = True
    on: Annotated[list[FailureClass], BeforeValidator(_failure_classes)] = Field(
        default_factory=lambda: sorted(_RETRYABLE)
    )


class Timeout(Strict):
    total: Duration | None = 60.0
    first_token: Duration | None = None


class CostCap(Strict):
    per_request: float = Field(gt=0, description="USD, worst case of one attempt")


RequestFallbacks = Literal["append", "replace", "ignore"]


def _strategy_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class StrategySpec(BaseModel):
    """``strategy: name`` or ``strategy: {type: name, <its options>}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


Strategy = Annotated[StrategySpec, BeforeValidator(_strategy_shorthand)]


class Shadow(Strict):
    """Mirror a share of a route's traffic to another target, after the response."""

    target: str = Field(description='"provider/model"')
    share: float = Field(1.0, gt=0, le=1)

    @field_validator("target")
    @classmethod
    def _provider_slash_model(cls, value: str) -> str:
        return _TargetFields._provider_slash_model(value)


def _cache_shorthand(value: Any) -> Any:
    if isinstance(value, bool):
        return {"enabled": value}
    return value


class CacheConfig(Strict):
    """Response caching of a route (``cache: {ttl: 10m}``; ``cache: false`` turns it off).

    A route's ``cache`` overrides only the keys it sets of ``defaults.cache``.
    """

    enabled: bool = True
    ttl: Duration = Field(300.0, gt=0, description="how long an entry lives")
    backend: Literal["memory", "redis"] = "memory"
    url: str = Field("redis://127.0.0.1:6379/0", description="the Redis server (backend redis)")
    timeout: Duration = Field(0.25, gt=0, description="per Redis command; slower is a miss")
    max_entries: int = Field(10_000, ge=1, description="LRU bound of the memory backend")
    per_caller: bool = Field(False, description="a separate cache per caller (API key)")
    caller_header: str = Field("authorization", min_length=1, description="names the caller")
    sampled: bool = Field(False, description="also cache requests with temperature > 0")
    prefix: str = Field("turnout", min_length=1, description="Redis key prefix")

    @field_validator("caller_header")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


Cache = Annotated[CacheConfig, BeforeValidator(_cache_shorthand)]


def _guardrail_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class GuardrailSpec(BaseModel):
    """``pii`` or ``{type: pii, on: input, action: redact, <its options>}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)
    on: Literal["input", "output", "both"] | None = None
    action: Literal["block", "redact", "log", "retry", "fallback"] | None = None
    name: str | None = Field(None, min_length=1, description="label in errors and metrics")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


Guardrails = list[Annotated[GuardrailSpec, BeforeValidator(_guardrail_shorthand)]]


class Defaults(Strict):
    """Settings every route inherits unless it sets its own."""

    retry: Retry = Retry()
    timeout: Timeout = Timeout()
    request_fallbacks: RequestFallbacks = "append"
    strategy: Strategy = StrategySpec(type="weighted")
    latency_decay: Duration = Field(10.0, gt=0, description="peak-EWMA decay of target latency")
    direct: bool = Field(True, description='route "provider/model" names with no matching route')
    cache: Cache | None = None
    guardrails: Guardrails = Field(default_factory=list)


class Gateway(Strict):
    """Settings of the HTTP gateway (``turnout serve``) and of the request log."""

    max_body: ByteSize = Field(
        ByteSize(4 * 1024 * 1024),
        gt=0,
        description="largest request body accepted, e.g. 4MiB or 512kB; larger ones get 413",
    )
    max_messages: int = Field(
        2048, ge=1, description="most messages one chat request may carry; more get 400"
    )
    max_header_bytes: ByteSize = Field(
        ByteSize(64 * 1024),
        gt=0,
        description="largest total size of a request's header names and values; larger get 431",
    )
    header_timeout: Duration = Field(
        10.0,
        gt=0,
        description="time a client has to send a request's head (408 and closed after); "
        "read when the gateway starts",
    )
    send_timeout: Duration = Field(
        30.0,
        gt=0,
        description="time a response may wait on a client that stopped reading it; then "
        "the connection is closed, the upstream call cancelled and its budget hold "
        "released; read when the gateway starts",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="connections and requests one gateway process takes at once; more get "
        "503; read when the gateway starts",
    )
    log_content: bool = Field(
        False, description="put message content in the request log (off: never logged)"
    )
    ui: bool = Field(
        False,
        description="serve the live dashboard at /ui (with keys: on, to admin: true keys only)",
    )
    public_metrics: bool = Field(
        False,
        description="with keys: on, serve /metrics to anyone; off (the default), only to "
        "a key with admin: true (its series name budgets and keys)",
    )


def _otel_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except ImportError:  # no opentelemetry package at all
        return False


class Telemetry(Strict):
    """OpenTelemetry traces (``turnout.plugins.tracing``, needs ``turnout[otel]``).

    Unset fields fall back to the standard ``OTEL_*`` environment variables.
    """

    traces: bool | None = Field(
        None,
        description="export traces over OTLP/HTTP; unset: on when OTEL_EXPORTER_OTLP_ENDPOINT "
        "or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set",
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="OTLP/HTTP collector URL, e.g. http://collector:4318 (/v1/traces is added "
        "to a bare host); unset: the OTEL_EXPORTER_OTLP_* variables, else localhost:4318",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="headers sent to the collector (e.g. an API key)"
    )
    service_name: str | None = Field(
        None, description="service.name of the spans; unset: OTEL_SERVICE_NAME, else turnout"
    )
    content: bool = Field(
        False, description="put message content on the spans (off: never recorded)"
    )

    @model_validator(mode="after")
    def _installed(self) -> Telemetry:
        if self.traces and not _otel_installed():
            raise ValueError("traces need the OpenTelemetry SDK: pip install 'turnout[otel]'")
        return self


class Route(Strict):
    name: str = Field(min_length=1)
    strategy: Strategy | None = None
    shadow: Shadow | None = None
    match: Match = Match()
    targets: list[Target] = Field(default_factory=list)
    fallbacks: list[Target] = Field(default_factory=list)
    retry: Retry | None = None
    timeout: Timeout | None = None
    cost_cap: CostCap | None = None
    request_fallbacks: RequestFallbacks | None = None
    budget: BudgetLimits = Field(default_factory=list, description="budgets of this route")
    rate_limit: RateLimit | None = None
    over_budget: Literal["refuse", "cheaper"] = Field(
        "refuse", description="a target over budget: refuse (429) or try a cheaper one that fits"
    )
    cache: Cache | None = None
    guardrails: Guardrails | None = None


class Policy(Strict):
    """The whole of routes.yaml."""

    version: Literal[1] = 1
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelOverride] = Field(default_factory=dict)
    defaults: Defaults = Defaults()
    routes: list[Route] = Field(default_factory=list)
    gateway: Gateway = Gateway()
    state: StateConfig = StateConfig()
    budgets: list[Budget] = Field(default_factory=list)
    rate_limits: list[RateLimitRule] = Field(default_factory=list)
    breaker: Breaker | None = None
    keys: Keys | None = None
    telemetry: Telemetry = Telemetry()
