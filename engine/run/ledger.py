"""Budget and rate-limit accounting around a request's attempts; circuit breakers.

The request's lifecycle owner (``turnout.run.serve.Serving``) drives it (the
planner never does I/O):

1. ``BudgetLedger.open`` — before any attempt: one read of the counters and
   breakers the plan could touch, turned into a ``StateSnapshot``; it returns the
   request's account and the plan restricted to what fits (``planner.restrict``),
   or refuses the request (429 naming the budget and when it resets).
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
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog
from turnout import metrics
from turnout.policy.limits import (
    NANO,
    ApiKeyInfo,
    CompiledLimits,
    RequestFacts,
    Rule,
    describe_reset,
    window_bounds,
)
from turnout.routing.plan import Attempt, Plan
from turnout.routing.planner import restrict
from turnout.run.account import (
    BREAKER_GAUGE,
    Books,
    Held,
    RequestAccount,
    WorstCase,
    budget_error,
)
from turnout.state import Counter, StateBackend, StateSnapshot, StateUnavailable
from turnout.state.base import breaker_view

__all__ = ["BudgetLedger", "RequestAccount", "make_backend", "state_identity"]


log = structlog.get_logger("turnout.ledger")


def make_backend(limits: CompiledLimits | None) -> StateBackend:
    """The backend ``state:`` names (memory when there is nothing to keep)."""
    config = limits.state if limits is not None else None
    if config is None or config.backend == "memory":
        from turnout.state.memory import MemoryState

        return MemoryState()
    if config.backend == "sqlite":
        from turnout.state.sqlite import SQLiteState

        return SQLiteState(config.path)
    from turnout.state.redis import RedisState

    assert config.url is not None
    return RedisState(config.url, prefix=config.prefix, timeout=config.timeout)


def state_identity(limits: CompiledLimits | None) -> tuple[Any, ...]:
    """What makes two ``state:`` sections the same backend (``make_backend`` would
    build the same thing); the ``*_on_error`` choices are read per request."""
    config = limits.state if limits is not None else None
    if config is None or config.backend == "memory":
        return ("memory",)
    if config.backend == "sqlite":
        return ("sqlite", config.path)
    return ("redis", config.url, config.prefix, config.timeout)


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
        self.books = Books(backend, wall, self.failed, self.spawn)

    async def open(
        self,
        limits: CompiledLimits,
        plan: Plan,
        facts: RequestFacts,
        worst_case: Callable[[Attempt], WorstCase],
    ) -> tuple[RequestAccount, Plan]:
        """Read the state ``plan`` depends on: the request's account, and the plan
        restricted to what fits (``plan`` itself when nothing is left out).
        Raises the 429 when the request cannot fit at all."""
        account = RequestAccount(self.books, limits, facts, worst_case)
        now = self.wall()
        held = [account.holds(a, now, with_fixed=True) for a in plan.attempts]
        keys = list(dict.fromkeys(h.key for holds in held if holds for _, h in holds))
        targets = [a.name for a in plan.attempts] if limits.breaker else []
        try:
            counters = dict(zip(keys, await self.backend.read(keys), strict=True)) if keys else {}
            fields = await self.backend.breakers(targets) if targets else []
        except StateUnavailable as exc:
            self.failed("read", exc)
            counters, fields = {}, [{} for _ in targets]  # unknown breakers: closed
        if counters:
            self._export(held, counters)
        open_circuits = set()
        if limits.breaker is not None:
            for name, f in zip(targets, fields, strict=True):
                view = breaker_view(f, now, limits.breaker)
                account.breakers[name] = f
                if view == "open":
                    open_circuits.add(name)
                    metrics.BREAKER_STATE.labels(metrics.breaker_target(name)).set(BREAKER_GAUGE["open"])
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
            plan = restrict(plan, snapshot)
        return account, plan

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

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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
        (its key, team, tags and, unless it names ``end_users``, its user counter;
        only the routes it may use). Other per-user ones, and per-caller ones
        without a key, are left out: one counter per caller."""
        facts = (
            RequestFacts("", key.name, key.entry.team, tuple(key.entry.tags), key.name)
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
            elif rule.scope == "user":  # with a key: the key's own counter, unless per end user
                if key is None:
                    values = [rule.match] if rule.match is not None else []
                else:
                    values = [] if key.entry.end_users else [rule.scope_value(facts, None)]
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
