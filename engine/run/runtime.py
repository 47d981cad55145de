"""The values a request's helpers run with: one frozen ``Runtime`` per engine.

Helpers (the attempt loop, the serve path, shadows) take this value, never
the object that built it. Swapping a piece (a test's ``sleep``) makes a new
``Runtime`` with ``dataclasses.replace``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from turnout.contract.route_hooks import HookSelection
from turnout.run.ledger import BudgetLedger
from turnout.state.stats import TargetStats
from turnout.upstream.clients import ClientPool

__all__ = ["Runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """Clock, sleep, randomness, live stats, upstream clients, hook caller, ledger.

    :param hook: the plugin manager's hook relay (``pm.hook``): every implementation.
    :param hooks: the request hooks each route calls (``hooks.of(route)``),
        selected per compiled route; the request path calls only those.
    :param clock: monotonic seconds, for latencies and deadlines.
    :param sleep: awaited for retry backoff.
    :param spawn: runs a coroutine in the background (shadow traffic).
    :param ledger: budgets, rate limits and breakers; None: never metered.
    """

    hook: Any
    hooks: HookSelection
    clients: ClientPool
    clock: Callable[[], float]
    sleep: Callable[[float], Any]
    rng: random.Random
    stats: TargetStats | None
    ledger: BudgetLedger | None
    spawn: Callable[[Coroutine[Any, Any, None]], None]
