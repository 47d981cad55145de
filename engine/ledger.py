"""Budget and rate-limit accounting around a request's attempts; circuit breakers.

The executor drives it (the planner never does I/O):

1. ``BudgetLedger.open`` — before any attempt: one read of the counters and
   breakers the plan could touch, turned into a ``StateSnapshot``; the plan is
   restricted to what fits (``planner.restrict``), or the request is refused
   (429 naming the budget and when it resets).
2. ``RequestAccount.reserve`` — before each attempt: hold the attempt's worst
   case (the planner's estimate: prompt + max output at the catalog's dearest
   price) on every counter that applies, atomically, all or nothing. A hold
   that does not fit skips the target or refuses the request.
3. ``RequestAccount.settle`` — after each attempt: replace the hold by the
   actual use (cost from the reported usage) and record the breaker event.

Spend can exceed a limit only if a provider bills more than the worst case.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from . import metrics
from .errors import FailureClass, ProviderError, TurnoutError
from .limits import (
    NANO,
    ApiKeyInfo,
    CompiledLimits,
    RequestFacts,
    Rule,
    describe_reset,
    window_bounds,
)
from .planner import restrict
from .state import Counter, Hold, Release, StateBackend, StateSnapshot, StateUnavailable
from .state.base import breaker_view

if TYPE_CHECKING:
    from .context import RequestContext
    from .plan import Attempt
    from .schema import Usage

__all__ = ["BudgetLedger", "RequestAccount", "make_backend"]

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
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

Held = list[tuple[Rule, Hold]]


def make_backend(limits: CompiledLimits | None) -> StateBackend:
    """The backend ``state:`` names (memory when there is nothing to keep)."""
    config = limits.state if limits is not None else None
    if config is None or config.backend == "memory":
        from .state.memory import MemoryState

        return MemoryState()
    if config.backend == "sqlite":
        from .state.sqlite import SQLiteState

        return SQLiteState(config.path)
    from .state.redis import RedisState

    assert config.url is not None
    return RedisState(config.url, prefix=config.prefix, timeout=config.timeout)


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


class BudgetLedger:
    """The engine's accounting: one backend, shared by every request.

    :param wall: wall-clock seconds (windows are UTC and shared across
        processes, so not monotonic); injected in tests.
    """

    def __init__(self, backend: StateBackend, *, wall: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.wall = wall
        self._tasks: set[asyncio.Task[None]] = set()
        self._gauges: dict[str, Any] = {}

    async def open(self, ctx: RequestContext, limits: CompiledLimits) -> RequestAccount:
        """Read the state the plan depends on; restrict the plan to what fits."""
        account = RequestAccount(self, ctx, limits)
        ctx.account = account
        now = self.wall()
        plan = ctx.plan
        held = [account.holds(a, now, with_fixed=True) for a in plan.attempts]
        keys = list(dict.fromkeys(h.key for holds in held if holds for _, h in holds))
        targets = [a.name for a in plan.attempts] if limits.breaker else []
        try:
            counters = dict(zip(keys, await self.backend.read(keys), strict=True)) if keys else {}
            fields = await self.backend.breakers(targets) if targets else []
        except StateUnavailable as exc:
            self.failed("read", exc)
            counters, fields = {}, []
        if counters:
            self._export(held, counters)
        open_circuits = set()
        if limits.breaker is not None:
            for name, f in zip(targets, fields, strict=True):
                view = breaker_view(f, now, limits.breaker)
                account.breakers[name] = f
                if view == "open":
                    open_circuits.add(name)
                    metrics.BREAKER_STATE.labels(name).set(_BREAKER_VALUE["open"])
                elif view == "probe":
                    account.probes.add(name)
        rate_limited: dict[str, str] = {}
        over_budget: dict[str, str] = {}
        for position, (attempt, holds) in enumerate(zip(plan.attempts, held, strict=True)):
            if holds is None:
                over_budget[attempt.name] = account.unbounded_note(attempt)
                continue
            for rule, hold in holds:
                c = counters.get(hold.key, Counter())
                if c.used + c.held + hold.amount <= hold.limit:
                    continue
                end = window_bounds(rule.window, now)[1]
                note = f"{rule.label} ({rule.describe_limit()}) {describe_reset(end, now)}"
                if rule.per_target:
                    (rate_limited if rule.kind == "rate" else over_budget)[attempt.name] = note
                elif rule.kind == "budget" and (account.cheaper or position > 0):
                    over_budget[attempt.name] = note
                else:
                    metrics.BUDGET_REFUSALS.labels(rule.label).inc()
                    raise budget_error(rule, end, now)
                break
        if open_circuits or rate_limited or over_budget:
            snapshot = StateSnapshot(
                open_circuits=frozenset(open_circuits),
                rate_limited=rate_limited,
                over_budget=over_budget,
            )
            ctx.plan = restrict(plan, snapshot)
        return account

    def _export(self, held: Sequence[Held | None], counters: dict[str, Counter]) -> None:
        """``turnout_budget_remaining`` from the counters ``open`` read anyway (no
        extra round trip): the gateway's budgets and those naming what they count."""
        for holds in held:
            for rule, hold in holds or ():
                if rule.match is None and rule.scope != "gateway":
                    continue  # one counter per caller, route, ...: not exported
                c = counters.get(hold.key)
                if c is None:
                    continue
                gauge = self._gauges.get(hold.key)
                if gauge is None:
                    if len(self._gauges) > 4096:  # old windows' keys
                        self._gauges.clear()
                    gauge = metrics.BUDGET_REMAINING.labels(rule.label, rule.unit)
                    self._gauges[hold.key] = gauge
                scale = NANO if rule.unit == "usd" else 1
                gauge.set(max(0, rule.limit - c.used - c.held) / scale)

    def failed(self, operation: str, exc: Exception) -> None:
        metrics.STATE_ERRORS.labels(type(self.backend).name, operation).inc()
        log.warning("state backend failed", operation=operation, error=str(exc))

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def status(self, limits: CompiledLimits, facts: RequestFacts) -> list[dict[str, Any]]:
        """Spend and remaining of every budget and rate limit that applies to ``facts``
        (per-target ones for every provider/model they name)."""
        pairs: list[tuple[Rule, str]] = []
        rules = list(limits.request_rules) + list(limits.key_rules.get(facts.key or "", ()))
        for rule in rules + list(limits.target_rules):
            value = rule.match if rule.per_target else rule.scope_value(facts, None)
            if value is not None:
                pairs.append((rule, value))
        return await self._rows(pairs)

    async def overview(
        self, limits: CompiledLimits, routes: Sequence[str], key: ApiKeyInfo | None = None
    ) -> list[dict[str, Any]]:
        """What ``GET /v1/budgets`` shows: every budget and rate limit whose counter
        can be named without a request — the gateway's, each route's (of ``routes``),
        the ones that name what they count, and with ``key`` that caller's own
        (its key, team and tags; only the routes it may use). Per-user ones, and
        per-caller ones without a key, are left out: one counter per caller."""
        facts = (
            RequestFacts("", key.name, key.entry.team, tuple(key.entry.tags))
            if key is not None
            else RequestFacts("")
        )
        if key is not None and key.entry.routes is not None:
            routes = [r for r in routes if r in key.entry.routes]
        pairs: dict[tuple[str, str], tuple[Rule, str]] = {}
        rules = list(limits.request_rules) + list(limits.key_rules.get(facts.key or "", ()))
        for rule in rules + list(limits.target_rules):
            values: list[str | None]
            if rule.per_target:
                values = [rule.match] if rule.match is not None else []
            elif rule.scope == "route":
                values = [r for r in routes if rule.match in (None, r)]
            elif rule.scope == "user":
                values = [rule.match] if rule.match is not None and key is None else []
            elif key is not None:
                values = [rule.scope_value(facts, None)]
            else:
                values = [rule.match if rule.scope != "gateway" else "*"]
            for value in values:
                if value is not None:
                    pairs[(rule.id, value)] = (rule, value)
        return await self._rows(list(pairs.values()))

    async def _rows(self, pairs: Sequence[tuple[Rule, str]]) -> list[dict[str, Any]]:
        now = self.wall()
        rows = []
        for rule, value in pairs:
            start, end = window_bounds(rule.window, now)
            rows.append((rule, value, f"{rule.id}|{value}|{start}", end))
        counters = await self.backend.read([key for _, _, key, _ in rows]) if rows else []
        out = []
        for (rule, value, _, end), c in zip(rows, counters, strict=True):
            scale = NANO if rule.unit == "usd" else 1
            out.append(
                {
                    "name": rule.label,
                    "kind": rule.kind,
                    "scope": rule.scope,
                    "match": value,
                    "unit": rule.unit,
                    "window": rule.window,
                    "limit": rule.limit / scale,
                    "spent": c.used / scale,
                    "reserved": c.held / scale,
                    "remaining": max(0, rule.limit - c.used - c.held) / scale,
                    "resets_at": end,
                    "resets_in": max(0, math.ceil(end - now)),
                }
            )
        return out

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.aclose()


class RequestAccount:
    """The holds of one request: what it reserved, on which counters."""

    def __init__(self, ledger: BudgetLedger, ctx: RequestContext, limits: CompiledLimits) -> None:
        self.ledger = ledger
        self.ctx = ctx
        self.limits = limits
        self.facts = RequestFacts.of(ctx.route.name, ctx.request, ctx.key)
        self.cheaper = ctx.route.name in limits.cheaper_routes
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
        plan = self.ctx.plan
        for rules in self.rules:
            for rule in rules:
                value = rule.scope_value(self.facts, attempt.target)
                if value is None:
                    continue
                once = rule.unit == "requests" and not rule.per_target
                if once and not with_fixed:
                    continue
                if rule.unit == "requests":
                    amount: int | None = 1
                elif rule.unit == "tokens":
                    bound = attempt.target.info.output_bound(plan.prompt_tokens, plan.output_limit)
                    amount = None if bound is None else plan.prompt_tokens + bound
                else:
                    cost = attempt.estimated_cost
                    amount = None if cost is None else math.ceil(cost * NANO)
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
        ledger = self.ledger
        now = ledger.wall()
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
            index = await ledger.backend.reserve([h for _, h in holds])
        except StateUnavailable as exc:
            ledger.failed("reserve", exc)
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
                    await self._breaker(attempt.name, "success", self.ledger.wall())
            elif error.failure in _UNHEALTHY:
                await self._breaker(attempt.name, "failure", self.ledger.wall())

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
            self.ledger.spawn(self._release(releases))

    def refusal(self) -> TurnoutError | None:
        return self.refused[0] if self.refused else None

    async def _release(self, releases: Sequence[Release]) -> None:
        try:
            await self.ledger.backend.release(releases)
        except StateUnavailable as exc:
            self.ledger.failed("release", exc)

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
            state = await self.ledger.backend.breaker(target, event, now, rule)
        except StateUnavailable as exc:
            self.ledger.failed("breaker", exc)
            return None
        metrics.BREAKER_STATE.labels(target).set(_BREAKER_VALUE.get(state.state, 0.0))
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
