"""One request's account with the budget ledger: the holds it reserved before
each attempt, settled to actual use after it, and its breaker events.

``BudgetLedger.open`` (turnout.run.ledger) creates it; the request's lifecycle
owner (``turnout.run.serve.Serving``) reserves, settles and releases it, and
nothing else touches it. It holds values, never its parents: the ``Books`` it
writes to (backend, wall clock, failure and background sinks) and a
``worst_case`` function for the request's operation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from turnout import metrics
from turnout.errors import FailureClass, ProviderError, TurnoutError
from turnout.policy.limits import (
    NANO,
    CompiledLimits,
    RequestFacts,
    Rule,
    describe_reset,
    window_bounds,
)
from turnout.state import Hold, Release, StateBackend, StateUnavailable

if TYPE_CHECKING:
    from turnout.routing.plan import Attempt
    from turnout.wire.chat import Usage

__all__ = ["BREAKER_GAUGE", "Books", "Held", "RequestAccount", "WorstCase", "budget_error"]

log = structlog.get_logger("turnout.ledger")

_GRACE = 3600.0  # counters outlive their window by this much, for late settlements
_UNHEALTHY = frozenset(
    {
        FailureClass.SERVER_ERROR,
        FailureClass.OVERLOADED,
        FailureClass.TIMEOUT,
        FailureClass.CONNECTION,
        FailureClass.RATE_LIMITED,
    }
)
BREAKER_GAUGE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

Held = list[tuple[Rule, Hold]]


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The most one attempt can use: tokens (prompt + output bound) and USD.
    None: unbounded (no price, no output limit), which a budget cannot hold."""

    tokens: int | None
    cost: float | None


@dataclass(frozen=True, slots=True)
class Books:
    """What an account needs of the ledger, as values: the backend, the wall
    clock, where backend failures are reported, where background settlements run."""

    backend: StateBackend
    wall: Callable[[], float]
    failed: Callable[[str, Exception], None]
    spawn: Callable[[Coroutine[Any, Any, None]], None]


def budget_error(rule: Rule, end: float, now: float, detail: str = "") -> TurnoutError:
    reset = describe_reset(end, now)
    kind = "budget_exceeded" if rule.kind == "budget" else "rate_limit_exceeded"
    error = TurnoutError(
        f"{rule.label} ({rule.describe_limit()}) is used up{detail}; it {reset}",
        status_code=429,
        type="rate_limit_error" if rule.kind == "rate" else "insufficient_quota",
        code=kind,
    )
    error.extra_fields = {
        "budget": rule.label,
        "limit": rule.describe_limit(),
        "resets_at": end,
        "retry_after": max(1, math.ceil(end - now)),
    }
    return error


class RequestAccount:
    """The holds of one request: what it reserved, on which counters."""

    def __init__(
        self,
        books: Books,
        limits: CompiledLimits,
        facts: RequestFacts,
        worst_case: Callable[[Attempt], WorstCase],
    ) -> None:
        self.books = books
        self.limits = limits
        self.facts = facts
        self.worst_case = worst_case
        self.cheaper = facts.route in limits.cheaper_routes
        self.rules = (
            limits.request_rules + limits.key_rules.get(self.facts.key or "", ()),
            limits.target_rules,
        )
        self.fixed: Held | None = None  # once per request: requests counted at the first attempt
        self.current: Held = []
        self.refused: list[TurnoutError] = []
        self.probes: set[str] = set()
        self.breakers: dict[str, dict[str, Any]] = {}

    # -- holds ---------------------------------------------------------------

    def holds(self, attempt: Attempt, now: float, *, with_fixed: bool) -> Held | None:
        """Every hold the attempt needs, or None when its worst case is unbounded."""
        out: Held = []
        worst: WorstCase | None = None
        for rules in self.rules:
            for rule in rules:
                value = rule.scope_value(self.facts, attempt.target)
                if value is None:
                    continue
                once = rule.unit == "requests" and not rule.per_target
                if once and not with_fixed:
                    continue
                amount: int | None = 1
                if rule.unit != "requests":
                    worst = worst or self.worst_case(attempt)
                    if rule.unit == "tokens":
                        amount = worst.tokens
                    else:
                        amount = None if worst.cost is None else math.ceil(worst.cost * NANO)
                if amount is None:
                    return None
                start, end = window_bounds(rule.window, now)
                key = f"{rule.id}|{value}|{start}"
                out.append((rule, Hold(key, rule.limit, amount, end + _GRACE)))
        return _merge(out)

    def unbounded_note(self, attempt: Attempt) -> str:
        return "its worst case cannot be bounded under a budget: no price, or set max_tokens"

    async def reserve(self, attempt: Attempt) -> bool:
        """Hold the attempt's worst case. False: skip this target. Raises 429 when
        the request cannot fit at all."""
        books = self.books
        now = books.wall()
        if attempt.name in self.probes:
            state = await self._breaker(attempt.name, "check", now)
            if state is not None and not state:
                return False
        holds = self.holds(attempt, now, with_fixed=self.fixed is None)
        if holds is None:
            self.refused.append(
                TurnoutError(f"{attempt.name}: {self.unbounded_note(attempt)}", status_code=429)
            )
            return False
        if not holds:
            self.current = []
            return True
        try:
            index = await books.backend.reserve([h for _, h in holds])
        except StateUnavailable as exc:
            books.failed("reserve", exc)
            config = self.limits.state
            closed = any(
                (r.kind == "budget" and config.budgets_on_error == "closed")
                or (r.kind == "rate" and config.rate_limits_on_error == "closed")
                for r, _ in holds
            )
            if closed:
                raise TurnoutError(
                    "budgets cannot be checked: the state backend is unavailable",
                    status_code=503,
                    type="api_error",
                    code="state_unavailable",
                ) from None
            self.current = []  # fail open: nothing held, nothing to settle
            return True
        if index < 0:
            self.current = [(r, h) for r, h in holds if not _once(r)]
            if self.fixed is None:
                self.fixed = [(r, h) for r, h in holds if _once(r)]
            return True
        rule = holds[index][0]
        end = window_bounds(rule.window, now)[1]
        error = budget_error(rule, end, now, f" (needs {_show(rule, holds[index][1].amount)})")
        metrics.BUDGET_REFUSALS.labels(rule.label).inc()
        self.refused.append(error)
        if rule.per_target or (self.cheaper and rule.kind == "budget"):
            return False
        await self.close()
        raise error

    # -- settlement ----------------------------------------------------------

    async def settle(
        self,
        attempt: Attempt,
        *,
        usage: Usage | None = None,
        cost: float | None = None,
        error: ProviderError | None = None,
        final: bool = False,
    ) -> None:
        """Replace the attempt's holds with what it used; ``final`` also settles
        the request's once-per-request counts. Records the breaker event."""
        releases = [
            Release(h.key, h.amount, _used(r, h, usage, cost, error), h.expires)
            for r, h in self.current
        ]
        self.current = []
        if final and self.fixed:
            releases += [Release(h.key, h.amount, h.amount, h.expires) for _, h in self.fixed]
            self.fixed = []
        if releases:
            await self._release(releases)
        if self.limits.breaker is not None:
            if error is None:
                if attempt.name in self.probes or self._dirty(attempt.name):
                    await self._breaker(attempt.name, "success", self.books.wall())
            elif error.failure in _UNHEALTHY:
                await self._breaker(attempt.name, "failure", self.books.wall())

    async def close(self) -> None:
        """The request is over: release whatever is still held (nothing was used)."""
        releases = [Release(h.key, h.amount, _used(r, h, None, None, True), h.expires)
                    for r, h in self.current]  # fmt: skip
        releases += [Release(h.key, h.amount, h.amount, h.expires) for _, h in self.fixed or ()]
        self.current, self.fixed = [], []
        if releases:
            await self._release(releases)

    def abandon(self) -> None:
        """The request was cancelled: settle in the background, charging what an
        attempt in flight held (it may have been billed)."""
        releases = [Release(h.key, h.amount, h.amount, h.expires) for _, h in self.current]
        releases += [Release(h.key, h.amount, h.amount, h.expires) for _, h in self.fixed or ()]
        self.current, self.fixed = [], []
        if releases:
            self.books.spawn(self._release(releases))

    def refusal(self) -> TurnoutError | None:
        return self.refused[0] if self.refused else None

    async def _release(self, releases: Sequence[Release]) -> None:
        try:
            await self.books.backend.release(releases)
        except StateUnavailable as exc:
            self.books.failed("release", exc)

    def _dirty(self, target: str) -> bool:
        fields = self.breakers.get(target)
        if self.limits.breaker is not None and self.limits.breaker.ratio is not None:
            return True
        if not fields:
            return False
        return fields.get("state") != "closed" or int(fields.get("fails", 0)) > 0

    async def _breaker(self, target: str, event: Any, now: float) -> bool | None:
        rule = self.limits.breaker
        assert rule is not None
        try:
            state = await self.books.backend.breaker(target, event, now, rule)
        except StateUnavailable as exc:
            self.books.failed("breaker", exc)
            return None
        gauge = metrics.BREAKER_STATE.labels(metrics.breaker_target(target))
        gauge.set(BREAKER_GAUGE.get(state.state, 0.0))
        return state.allowed


def _once(rule: Rule) -> bool:
    return rule.unit == "requests" and not rule.per_target


def _merge(holds: Held) -> Held:
    """One hold per counter key (two rules counting the same thing: the stricter limit)."""
    seen: dict[str, int] = {}
    out: Held = []
    for rule, hold in holds:
        if hold.key in seen:
            i = seen[hold.key]
            if hold.limit < out[i][1].limit:
                out[i] = (rule, hold)
            continue
        seen[hold.key] = len(out)
        out.append((rule, hold))
    return out


def _used(rule: Rule, hold: Hold, usage: Usage | None, cost: float | None, error: object) -> int:
    if rule.unit == "requests":
        return hold.amount  # the upstream saw the request
    if error:
        return 0
    if rule.unit == "tokens":
        return hold.amount if usage is None else usage.prompt_tokens + usage.completion_tokens
    return hold.amount if cost is None else math.ceil(cost * NANO)


def _show(rule: Rule, amount: int) -> str:
    return f"${amount / NANO:.6f}" if rule.unit == "usd" else f"{amount} {rule.unit}"
