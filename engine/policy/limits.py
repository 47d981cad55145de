"""Budgets, rate limits, breakers and API keys, compiled from the policy.

Pure: no I/O. ``compile_limits`` cross-checks references (a budget naming an
unknown route, a key allowed an unknown route) and reports them with file:line
through the compiler; the result is immutable and shared by every request.
Everything is counted in integers: nano-USD, tokens or requests.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Protocol

from turnout.errors import TurnoutError
from turnout.policy.limit_models import BudgetLimit, KeyEntry, RateLimit, StateConfig
from turnout.state import BreakerRule
from turnout.types import JSONPath

if TYPE_CHECKING:
    from turnout.policy.models import Policy, Route
    from turnout.wire.chat import ChatRequest

__all__ = [
    "NANO",
    "ApiKeyInfo",
    "CompiledLimits",
    "KeyRing",
    "Rule",
    "ScopedTarget",
    "compile_limits",
    "hash_key",
    "window_bounds",
]

NANO = 1_000_000_000
_SIZES = {"minute": 60, "hour": 3600, "day": 86400}
_PER_TARGET = frozenset({"provider", "model", "target"})


def window_bounds(window: str, now: float) -> tuple[int, float]:
    """The start (an int, part of the counter key) and end of the fixed UTC window."""
    if window == "month":
        day = datetime.fromtimestamp(now, UTC)
        start = datetime(day.year, day.month, 1, tzinfo=UTC)
        end = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp()), end.timestamp()
    size = _SIZES[window]
    first = int(now // size) * size
    return first, float(first + size)


def hash_key(salt: str, key: str) -> str:
    """The stored form of a gateway API key: ``sha256:`` HMAC-SHA256 under the file's salt."""
    return "sha256:" + hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An authenticated caller (never the key itself)."""

    name: str
    entry: KeyEntry

    @property
    def restricted(self) -> bool:
        """The key names the routes or models it may use (else it may use all)."""
        return self.entry.routes is not None or self.entry.models is not None

    def allows(self, route: str, model: str) -> bool:
        entry = self.entry
        if entry.routes is not None and route not in entry.routes:
            return False
        return entry.models is None or any(fnmatchcase(model, p) for p in entry.models)


class KeyRing:
    """Authenticates ``Authorization: Bearer <key>`` against the hashed keys."""

    def __init__(self, salt: str, entries: Mapping[str, KeyEntry]) -> None:
        self.salt = salt
        self._by_digest = {entry.hash: ApiKeyInfo(name, entry) for name, entry in entries.items()}

    def authenticate(self, headers: Mapping[str, str]) -> ApiKeyInfo:
        """The caller's key, or TurnoutError 401. Hashes compare in constant time."""
        raw = headers.get("authorization") or headers.get("Authorization") or ""
        scheme, _, token = raw.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if not token:
            token = (headers.get("x-api-key") or "").strip()
        if not token:
            raise TurnoutError(
                "this gateway needs an API key: send Authorization: Bearer <key>",
                status_code=401,
                type="authentication_error",
                code="missing_api_key",
            )
        digest = hash_key(self.salt, token)
        found = None
        for stored, info in self._by_digest.items():
            if hmac.compare_digest(stored, digest):
                found = info
        if found is None:
            raise TurnoutError(
                "the API key is not known to this gateway",
                status_code=401,
                type="authentication_error",
                code="invalid_api_key",
            )
        return found


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class ScopedTarget(Protocol):
    """What a per-target rule reads of a target (a compiled target is one)."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> _Named: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """One budget or rate limit, counted per window in integer units.

    :param id: stable across restarts and processes: part of the counter keys.
    :param per_target: counts per attempt target (provider, model, target scopes).
    """

    id: str
    label: str
    kind: str  # "budget" or "rate"
    scope: str
    match: str | None
    unit: str  # "usd", "tokens" or "requests"
    window: str
    limit: int
    per_target: bool

    def scope_value(self, facts: RequestFacts, target: ScopedTarget | None) -> str | None:
        """Which counter of this rule the request (and target) uses; None: it does not apply."""
        scope = self.scope
        if scope == "gateway":
            value: str | None = "*"
        elif scope == "route":
            value = facts.route
        elif scope == "provider":
            value = target.provider.name if target is not None else None
        elif scope in ("model", "target"):
            value = target.name if target is not None else None
        elif scope == "key":
            value = facts.key
        elif scope == "team":
            value = facts.team
        elif scope == "user":
            value = facts.user
        else:  # tag: compiled only with a match
            return self.match if self.match in facts.tags else None
        if value is None or (self.match is not None and value != self.match):
            return None
        return value

    def describe_limit(self) -> str:
        if self.unit == "usd":
            return f"${self.limit / NANO:g} per {self.window}"
        return f"{self.limit} {self.unit} per {self.window}"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What scopes a request falls in: its route, API key, team, tags and user."""

    route: str
    key: str | None = None
    team: str | None = None
    tags: tuple[str, ...] = ()
    user: str | None = None

    @classmethod
    def of(cls, route: str, request: ChatRequest, key: ApiKeyInfo | None) -> RequestFacts:
        metadata = getattr(request, "metadata", None) or {}
        if key is not None:
            team, tags = key.entry.team, tuple(key.entry.tags)
        else:
            team = metadata.get("team") if isinstance(metadata.get("team"), str) else None
            raw_tags = metadata.get("tags")
            tags = tuple(str(t) for t in raw_tags) if isinstance(raw_tags, list) else ()
        return cls(route, key.name if key else None, team, tags, user_of(request.user, key))


def user_of(user: str | None, key: ApiKeyInfo | None) -> str | None:
    """Who a ``user`` budget counts: without keys, the body's ``user``; with keys,
    the key itself, or ``<key>/<user>`` for a key allowed ``end_users`` that named
    one (so no caller can escape its budget by omitting ``user``, nor charge
    another key's users by naming them)."""
    if key is None:
        return user
    if key.entry.end_users and user:
        return f"{key.name}/{user}"
    return key.name


@dataclass(frozen=True, slots=True)
class CompiledLimits:
    """Every budget and rate limit of the policy, the breaker rule, keys and state."""

    state: StateConfig
    request_rules: tuple[Rule, ...] = ()
    target_rules: tuple[Rule, ...] = ()
    breaker: BreakerRule | None = None
    keys: KeyRing | None = None
    cheaper_routes: frozenset[str] = frozenset()
    key_rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)

    @property
    def metered(self) -> bool:
        """Anything to count or check per request (keys alone are checked when planning)."""
        return bool(self.request_rules or self.target_rules or self.breaker or self.key_rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        keyed = tuple(r for rules in self.key_rules.values() for r in rules)
        return self.request_rules + self.target_rules + keyed


Problem = Callable[[JSONPath, str, str | None], None]


class _LimitCompiler:
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.ids: set[str] = set()

    def budget(
        self, spec: BudgetLimit, scope: str, match: str | None, path: JSONPath, default_id: str
    ) -> Rule:
        limit = math.floor(spec.limit * NANO) if spec.unit == "usd" else math.floor(spec.limit)
        rid = f"budget:{spec.name}" if spec.name else default_id
        if rid in self.ids:
            self.problem(
                path, f"two budgets count the same thing ({rid})", "give them distinct names"
            )
        self.ids.add(rid)
        where = "gateway" if scope == "gateway" else f"{scope} {match or '(each)'}"
        label = f"budget {spec.name!r}" if spec.name else f"{where} budget"
        per = scope in _PER_TARGET
        return Rule(rid, label, "budget", scope, match, spec.unit, spec.window, limit, per)

    def rates(self, spec: RateLimit, scope: str, match: str | None, base: str) -> list[Rule]:
        out = []
        where = "gateway" if scope == "gateway" else f"{scope} {match or '(each)'}"
        for unit, limit in (("requests", spec.rpm), ("tokens", spec.tpm)):
            if limit is not None:
                label = f"{where} rate limit ({'rpm' if unit == 'requests' else 'tpm'})"
                per = scope in _PER_TARGET
                out.append(
                    Rule(f"{base}:{unit}", label, "rate", scope, match, unit, "minute", limit, per)
                )
        return out


def compile_limits(
    policy: Policy,
    routes: Sequence[tuple[Route, JSONPath]],
    providers: Collection[str],
    problem: Problem,
) -> CompiledLimits | None:
    """The compiled limits of ``policy``, or None when it sets none (the fast path).

    :param providers: the names of the policy's provider instances."""
    c = _LimitCompiler(problem)
    route_names = {route.name for route, _ in routes}
    request_rules: list[Rule] = []
    target_rules: list[Rule] = []

    def check_match(scope: str, match: str | None, path: JSONPath) -> None:
        if match is None:
            if scope == "tag":
                problem(path, "a tag budget needs match: the tag it counts", None)
            return
        if scope == "route" and match not in route_names:
            problem(path, f"unknown route {match!r}", f"routes: {', '.join(sorted(route_names))}")
        elif scope == "provider" and match not in providers:
            problem(path, f"unknown provider {match!r}", f"providers: {', '.join(providers)}")
        elif scope in ("model", "target"):
            prefix, slash, model = match.partition("/")
            if not (slash and model):
                problem(path, f"{match!r} is not of the form provider/model", None)
            elif prefix not in providers:
                problem(path, f"unknown provider {prefix!r} in {match!r}", None)
        elif scope == "key" and (policy.keys is None or match not in policy.keys.clients):
            problem(path, f"unknown API key {match!r}", "name one under keys: clients:")

    for i, budget in enumerate(policy.budgets):
        path: JSONPath = ("budgets", i)
        check_match(budget.scope, budget.match, (*path, "match"))
        rule = c.budget(
            budget,
            budget.scope,
            budget.match,
            path,
            f"budget:{budget.scope}:{budget.match or '*'}:{budget.unit}:{budget.window}",
        )
        (target_rules if rule.per_target else request_rules).append(rule)
    for i, rate in enumerate(policy.rate_limits):
        path = ("rate_limits", i)
        check_match(rate.scope, rate.match, (*path, "match"))
        for rule in c.rates(rate, rate.scope, rate.match, f"rate:{rate.scope}:{rate.match or '*'}"):
            (target_rules if rule.per_target else request_rules).append(rule)
    cheaper = set()
    for route, path in routes:
        for j, limit in enumerate(route.budget):
            request_rules.append(
                c.budget(
                    limit,
                    "route",
                    route.name,
                    (*path, "budget", j),
                    f"budget:route:{route.name}:{limit.unit}:{limit.window}",
                )
            )
        if route.rate_limit is not None:
            request_rules += c.rates(
                route.rate_limit, "route", route.name, f"rate:route:{route.name}"
            )
        if route.over_budget == "cheaper":
            cheaper.add(route.name)
    keys = None
    key_rules: dict[str, tuple[Rule, ...]] = {}
    if policy.keys is not None:
        keys = KeyRing(policy.keys.salt, policy.keys.clients)
        end_users = any(entry.end_users for entry in policy.keys.clients.values())
        for name, entry in policy.keys.clients.items():
            path = ("keys", "clients", name)
            if end_users and "/" in name:
                problem(
                    path,
                    f"key name {name!r} has a '/', which would make its user budget "
                    "counter one of another key's end users",
                    "rename the key (a key with end_users: true counts <key>/<user>)",
                )
            for route_name in entry.routes or ():
                if route_name not in route_names:
                    problem((*path, "routes"), f"unknown route {route_name!r}", None)
            rules = [
                c.budget(
                    b, "key", name, (*path, "budget", j), f"budget:key:{name}:{b.unit}:{b.window}"
                )
                for j, b in enumerate(entry.budget)
            ]
            if entry.rate_limit is not None:
                rules += c.rates(entry.rate_limit, "key", name, f"rate:key:{name}")
            if rules:
                key_rules[name] = tuple(rules)
    breaker = None
    if policy.breaker is not None:
        b = policy.breaker
        breaker = BreakerRule(b.failures, b.ratio, b.min_calls, b.window, b.cooldown)
    shared = policy.state.backend != "memory"  # stored responses live there too
    if not (request_rules or target_rules or breaker or keys or key_rules or shared):
        return None
    return CompiledLimits(
        policy.state,
        tuple(request_rules),
        tuple(target_rules),
        breaker,
        keys,
        frozenset(cheaper),
        key_rules,
    )


def describe_reset(end: float, now: float) -> str:
    """``resets at 2026-11-25T18:00:00Z (in 42s)``."""
    stamp = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"resets at {stamp} (in {max(0, math.ceil(end - now))}s)"
