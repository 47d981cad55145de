"""The policy schema of budgets, rate limits, circuit breakers, state and API keys.

Part of ``turnout.policy.models`` (kept apart so each module stays small): frozen
pydantic models, validated per field; references between sections (a budget
naming a route, a key allowed a route) are checked in ``turnout.policy.limits``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from turnout.policy.units import Duration, Strict

__all__ = [
    "Breaker",
    "Budget",
    "BudgetLimit",
    "BudgetLimits",
    "KeyEntry",
    "Keys",
    "RateLimit",
    "RateLimitRule",
    "StateConfig",
    "Window",
]

_WINDOWS = {
    "minute": "minute",
    "1m": "minute",
    "hour": "hour",
    "1h": "hour",
    "day": "day",
    "1d": "day",
    "24h": "day",
    "month": "month",
    "1mo": "month",
}


def _window(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in _WINDOWS:
        return _WINDOWS[value.strip().lower()]
    return value


Window = Annotated[Literal["minute", "hour", "day", "month"], BeforeValidator(_window)]
Unit = Literal["usd", "tokens", "requests"]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class BudgetLimit(Strict):
    """A budget on the thing it is written under (a route or an API key)."""

    name: str | None = Field(None, description="shown in errors and /v1/budgets")
    limit: float = Field(gt=0, description="in ``unit`` per window")
    unit: Unit = "usd"
    window: Window = Field("day", description="fixed window: minute, hour, day or month (UTC)")


BudgetLimits = Annotated[list[BudgetLimit], BeforeValidator(_one_or_many)]


class Budget(BudgetLimit):
    """A budget in the top-level ``budgets:`` list.

    ``scope`` says what it counts: the whole ``gateway``, a ``route``,
    ``provider``, ``model`` (``provider/model``), API ``key``, ``team`` or
    ``tag`` (from the API key, else the request's metadata), or the request's
    ``user``. With ``match`` it counts that one; without, each one separately.
    """

    scope: Literal["gateway", "route", "provider", "model", "key", "team", "tag", "user"] = (
        "gateway"
    )
    match: str | None = None


class RateLimit(Strict):
    """Requests and tokens per minute, on what it is written under."""

    rpm: int | None = Field(None, gt=0, description="requests per minute")
    tpm: int | None = Field(None, gt=0, description="tokens per minute (prompt + output)")

    @model_validator(mode="after")
    def _some(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs rpm, tpm or both")
        return self


class RateLimitRule(RateLimit):
    """A rate limit in the top-level ``rate_limits:`` list.

    ``scope``: ``key``, ``route``, ``target`` (``provider/model``: a target at
    its limit is skipped, not failed), ``provider``, ``user`` or ``gateway``;
    ``match`` as for budgets.
    """

    scope: Literal["gateway", "route", "target", "provider", "key", "user"] = "gateway"
    match: str | None = None


class Breaker(Strict):
    """The circuit breaker every target gets (off unless ``breaker:`` is given)."""

    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    ratio: float | None = Field(
        None, gt=0, le=1, description="failure share in `window` that opens it"
    )
    min_calls: int = Field(20, ge=1, description="calls in `window` before `ratio` applies")
    window: Duration = Field(60.0, gt=0, description="the window of `ratio`")
    cooldown: Duration = Field(30.0, gt=0, description="open this long, then one probe goes")


class StateConfig(Strict):
    """Where budgets, rate limits and breakers are kept."""

    backend: Literal["memory", "sqlite", "redis"] = "memory"
    path: str = Field("turnout-state.db", description="sqlite: the database file")
    url: str | None = Field(None, description="redis: redis://host:port/db")
    prefix: str = Field("turnout:", description="redis: key prefix")
    timeout: Duration = Field(1.0, gt=0, description="redis: socket timeout")
    budgets_on_error: Literal["closed", "open"] = Field(
        "closed", description="state unreachable: refuse requests under a budget (closed)"
    )
    rate_limits_on_error: Literal["closed", "open"] = Field(
        "open", description="state unreachable: let requests through their rate limits (open)"
    )
    responses_ttl: Duration = Field(
        30 * 86400, gt=0, description="how long stored /v1/responses answers are kept (720h)"
    )

    @model_validator(mode="after")
    def _redis_url(self) -> StateConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("backend redis needs url: redis://host:port/0")
        return self


class KeyEntry(Strict):
    """One gateway API key, stored as a hash (``turnout key hash`` makes one)."""

    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    routes: list[str] | None = Field(None, description="routes it may use (default: all)")
    models: list[str] | None = Field(None, description="model names or globs it may ask for")
    team: str | None = None
    tags: list[str] = Field(default_factory=list)
    budget: BudgetLimits = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    admin: bool = Field(False, description="may open the dashboard (/ui)")
    end_users: bool = Field(
        False,
        description="may name its end users in the body's user: user budgets then count "
        "each one apart, as <key>/<user> (without it, the key is the user)",
    )


class Keys(Strict):
    """Gateway API keys. When given, every request needs one (401 otherwise)."""

    salt: str = Field(min_length=16, description="per-file salt of the hashes")
    clients: dict[str, KeyEntry] = Field(default_factory=dict)
