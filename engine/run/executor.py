"""Running requests: the engine's one ``Executor`` builds the frozen ``Runtime``
and hands each request to the serve path (``turnout.run.serve``).

Knows no provider's wire format: providers return OpenAI-format objects or
raise ProviderError, and every decision is made from the FailureClass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pluggy
from turnout.contract.route_hooks import HookSelection
from turnout.run.context import RequestContext
from turnout.run.deadline import Deadline
from turnout.run.ledger import BudgetLedger
from turnout.run.operation import CHAT, Operation, StreamOperation
from turnout.run.runtime import Runtime
from turnout.run.serve import Deliver, Serving
from turnout.run.shadow import Shadows
from turnout.state.stats import TargetStats
from turnout.upstream.clients import ClientPool
from turnout.wire.chat import ChatResponse

__all__ = ["Executor", "Respond"]

R = TypeVar("R")

Respond = Deliver
"""Receives a served response before the request's observers run."""


class Executor:
    """Runs requests. One per engine; holds no per-request state."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        clients: ClientPool,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
        stats: TargetStats | None = None,
        ledger: BudgetLedger | None = None,
    ) -> None:
        self._shadows = Shadows()
        self.runtime = Runtime(
            hook=pm.hook,
            hooks=HookSelection(pm),
            clients=clients,
            clock=clock,
            sleep=sleep,
            rng=rng or random.Random(),
            stats=stats,
            ledger=ledger,
            spawn=self._shadows.spawn,
        )

    @property
    def clock(self) -> Callable[[], float]:
        return self.runtime.clock

    @property
    def ledger(self) -> BudgetLedger | None:
        return self.runtime.ledger

    @ledger.setter
    def ledger(self, ledger: BudgetLedger | None) -> None:
        """Swap the budget ledger (a reload that rebuilt the state backend)."""
        self.runtime = dataclasses.replace(self.runtime, ledger=ledger)

    @property
    def sleep(self) -> Callable[[float], Any]:
        return self.runtime.sleep

    @sleep.setter
    def sleep(self, sleep: Callable[[float], Any]) -> None:
        """Swap the backoff sleep (tests): a new runtime for later requests."""
        self.runtime = dataclasses.replace(self.runtime, sleep=sleep)

    def serving(self, ctx: RequestContext, op: Operation[R] | StreamOperation[R]) -> Serving[R]:
        """The lifecycle owner of one request of kind ``op``: await ``.serve()``
        (a whole answer) or iterate ``.stream()`` (chunks)."""
        return Serving(self.runtime, ctx, op)

    async def chat(
        self, ctx: RequestContext, respond: Respond | None = None, deadline: Deadline | None = None
    ) -> ChatResponse:
        """Serve a chat completion; ``respond`` (if given) gets the response
        before the ``turnout_request_finished`` observers run; ``deadline``:
        the request's timer, if its caller has one already."""
        return await Serving(self.runtime, ctx, CHAT, deadline).serve(respond)

    async def aclose(self) -> None:
        """Wait for shadow requests still running (they are never cut short)."""
        await self._shadows.aclose()
