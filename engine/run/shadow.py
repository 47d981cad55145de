"""Shadow traffic: a copy of a served request to the route's shadow target.

Runs in the background after the answer: never delays or alters it. The
result goes to ``turnout_shadow_finished`` observers only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from functools import partial
from typing import Any

from turnout.contract.calls import call_observers
from turnout.contract.provider import ProviderCall
from turnout.contract.strategy import weighted_index
from turnout.errors import ProviderError
from turnout.policy.table import CompiledTarget
from turnout.run.attempts import classify_unexpected
from turnout.run.context import RequestContext
from turnout.run.runtime import Runtime
from turnout.wire.chat import AttemptRecord

__all__ = ["Shadows", "start_shadow"]


class Shadows:
    """The shadow requests still running (they are never cut short)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def start_shadow(rt: Runtime, ctx: RequestContext) -> None:
    """Mirror ``ctx``'s request to its route's shadow target (its share of requests)."""
    assert ctx.route.shadow is not None
    target, share = ctx.route.shadow
    if share < 1 and rt.rng.random() >= share:
        return
    rt.spawn(_run_shadow(rt, ctx, target))


async def _run_shadow(rt: Runtime, ctx: RequestContext, target: CompiledTarget) -> None:
    provider = target.provider
    weights = provider.key_weights
    key = None
    if weights:
        key = provider.api_keys[weighted_index(weights, rt.rng) if len(weights) > 1 else 0]
    request = ctx.request
    if request.stream:
        request = request.model_copy(update={"stream": None, "stream_options": None})
    call = ProviderCall(
        request,
        target.model,
        key,
        timeout=ctx.route.timeout.total,
        client_factory=partial(rt.clients.client, provider),
        upstream_factory=partial(rt.clients.upstream, provider),
    )
    started = rt.clock()
    outcome, status, message, cost = "ok", None, None, None
    try:
        async with asyncio.timeout(ctx.route.timeout.total):
            response = await provider.provider.chat(call)
        if response.usage is not None:
            cost = target.info.cost(
                response.usage.prompt_tokens, response.usage.completion_tokens, response.usage
            )
    except ProviderError as exc:
        outcome, status = exc.failure.value, exc.status_code
        message = ctx.table.redactor.error(exc).message
    except Exception as exc:
        error = classify_unexpected(exc)
        outcome, message = error.failure.value, error.message
    record = AttemptRecord(
        provider=provider.name,
        model=target.model,
        outcome=outcome,
        latency_ms=round((rt.clock() - started) * 1000, 3),
        status_code=status,
        message=message,
    )
    hook = rt.hooks.of(ctx.route).turnout_shadow_finished
    await call_observers(hook, ctx=ctx, record=record, cost=cost)
