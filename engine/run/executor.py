"""Running a plan: hooks, upstream calls, retries, fallbacks, settlement.

Knows no provider's wire format: providers return OpenAI-format objects or
raise ProviderError, and every decision here is made from the FailureClass.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, cast

import pluggy
import structlog
from pydantic import ValidationError
from turnout.contract.calls import call_chain, call_first, call_observers, has_impls
from turnout.contract.provider import ProviderCall
from turnout.contract.strategy import weighted_index
from turnout.errors import FailureClass, ProviderError, TurnoutError
from turnout.policy.table import CompiledTarget
from turnout.routing.plan import Attempt
from turnout.run.attempts import Attempts, classify_unexpected, empty_plan_error
from turnout.run.context import RequestContext, RequestOutcome
from turnout.run.ledger import BudgetLedger
from turnout.run.streams import chunks_from_response
from turnout.state.stats import TargetStats
from turnout.upstream.clients import ClientPool
from turnout.wire.chat import (
    AttemptRecord,
    BilledUsage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ExtraFields,
    Usage,
)

__all__ = ["Executor"]

log = structlog.get_logger("turnout.executor")

_MODEL_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)

Respond = Callable[[ChatResponse], Awaitable[None]]
"""Receives a served response before the request's observers run."""


class Executor:
    """Runs plans. One per engine; holds no per-request state."""

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
        self.hook = pm.hook
        self.clients = clients
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.stats = stats
        self.ledger = ledger
        self._shadows: set[asyncio.Task[None]] = set()

    # -- non-streaming -------------------------------------------------------

    async def chat(self, ctx: RequestContext, respond: Respond | None = None) -> ChatResponse:
        """Serve ``ctx``; ``respond`` (if given) gets the response before the
        ``turnout_request_finished`` observers run (see ``Engine.chat``)."""
        try:
            response = await self._chat(ctx, respond)
        except TurnoutError as exc:
            await self._finish(
                ctx, RequestOutcome("error", exc.status_code, self._ms(ctx), error=exc)
            )
            raise
        except asyncio.CancelledError:
            if ctx.account is not None:
                ctx.account.abandon()
            await self._finish(ctx, RequestOutcome("cancelled", 499, self._ms(ctx)))
            raise
        return response

    async def _chat(self, ctx: RequestContext, respond: Respond | None) -> ChatResponse:
        hook = self.hook
        limits = ctx.table.limits
        if limits is not None and limits.metered and self.ledger is not None:
            await self.ledger.open(ctx, limits)  # may restrict ctx.plan, or refuse (429)
        short = await self._pre_request(ctx)
        if short is not None:
            outcome = RequestOutcome("ok", 200, self._ms(ctx), response=short, short_circuit=True)
            await self._deliver(ctx, short, outcome, respond)
            return short
        if not ctx.plan.attempts:
            raise empty_plan_error(ctx.plan)
        attempts = Attempts(self, ctx)
        try:
            while (next_call := await attempts.next_call()) is not None:
                attempt, call = next_call
                started = self.clock()
                try:
                    if call.timeout is None:
                        response = await attempt.target.provider.provider.chat(call)
                    else:
                        async with asyncio.timeout(call.timeout):
                            response = await attempt.target.provider.provider.chat(call)
                except ProviderError as exc:
                    await attempts.failed(attempt, exc, started)
                except Exception as exc:
                    await attempts.failed(attempt, classify_unexpected(exc), started)
                else:
                    attempts.succeeded(attempt, started)
                    raw = response.extra_fields.raw_response if response.extra_fields else None
                    fields = response.extra_fields = self._extra_fields(
                        ctx, attempt, response.usage, raw
                    )
                    if attempts.account is not None:
                        await attempts.account.settle(
                            attempt, usage=response.usage, cost=fields.cost, final=True
                        )
                    try:
                        response = cast(
                            ChatResponse,
                            await call_chain(
                                hook.turnout_post_response, "response", response, ctx=ctx
                            ),
                        )
                    except ProviderError as exc:  # a hook rejected this attempt's output
                        ctx.trail.pop()
                        await attempts.failed(attempt, exc, started)
                        continue
                    outcome = RequestOutcome(
                        "ok",
                        200,
                        self._ms(ctx),
                        response=response,
                        usage=response.usage,
                        cost=fields.cost,
                    )
                    await self._deliver(ctx, response, outcome, respond)
                    if ctx.route.shadow is not None:
                        self._shadow(ctx)
                    return response
            raise attempts.final_error()
        finally:
            attempts.abandon()

    # -- streaming -----------------------------------------------------------

    async def stream(
        self, ctx: RequestContext, publish: Callable[[ExtraFields], None]
    ) -> AsyncIterator[ChatChunk]:
        """Yield chunks; fall back while nothing has been yielded, raise after.
        ``publish`` receives the extra_fields once the stream has ended well."""
        outcome: RequestOutcome | None = None
        try:
            fields = None
            async for item in self._stream(ctx):
                if isinstance(item, ExtraFields):
                    fields = item
                    publish(item)
                else:
                    yield item
            usage = None
            if fields is not None and fields.billed_usage is not None:
                usage = Usage(
                    prompt_tokens=fields.billed_usage.prompt_tokens,
                    completion_tokens=fields.billed_usage.completion_tokens,
                    total_tokens=fields.billed_usage.prompt_tokens
                    + fields.billed_usage.completion_tokens,
                )
            if ctx.route.shadow is not None and fields is not None and fields.cache is None:
                self._shadow(ctx)
            outcome = RequestOutcome(
                "ok",
                200,
                self._ms(ctx),
                cost=fields.cost if fields else None,
                usage=usage,
                short_circuit=fields is not None and fields.cache is not None,
            )
        except TurnoutError as exc:
            outcome = RequestOutcome("error", exc.status_code, self._ms(ctx), error=exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            if ctx.account is not None:
                ctx.account.abandon()
            outcome = RequestOutcome("cancelled", 499, self._ms(ctx))
            raise
        finally:
            if outcome is not None:
                with contextlib.suppress(Exception):
                    await self._finish(ctx, outcome)

    async def _stream(self, ctx: RequestContext) -> AsyncIterator[ChatChunk | ExtraFields]:
        """Chunks, then (on a good end) the request's extra_fields as the last item."""
        hook = self.hook
        limits = ctx.table.limits
        if limits is not None and limits.metered and self.ledger is not None:
            await self.ledger.open(ctx, limits)  # may restrict ctx.plan, or refuse (429)
        short = await self._pre_request(ctx)
        if short is not None:
            for replay in chunks_from_response(short):
                yield replay
            cache = short.extra_fields.cache if short.extra_fields else None
            yield ExtraFields(
                request_type="chat_completion_stream",
                model_requested=ctx.request.model,
                route=ctx.route.name,
                request_id=ctx.request_id,
                cache=cache or "short_circuit",
            )
            return
        if not ctx.plan.attempts:
            raise empty_plan_error(ctx.plan)
        first_token = ctx.route.timeout.first_token
        attempts = Attempts(self, ctx)
        try:
            upstream: AsyncIterator[ChatChunk] | None = None
            first: ChatChunk | None = None
            served: Attempt | None = None
            while (next_call := await attempts.next_call()) is not None:
                attempt, call = next_call
                started = self.clock()
                limit = min((t for t in (call.timeout, first_token) if t is not None), default=None)
                upstream = attempt.target.provider.provider.stream(call)
                try:
                    async with asyncio.timeout(limit):
                        first = await anext(upstream)
                except StopAsyncIteration:
                    await attempts.failed(
                        attempt,
                        ProviderError(
                            FailureClass.CONNECTION, "stream ended before its first chunk"
                        ),
                        started,
                    )
                except ProviderError as exc:
                    await attempts.failed(attempt, exc, started)
                except TimeoutError:
                    await attempts.failed(
                        attempt,
                        ProviderError(FailureClass.TIMEOUT, f"no first chunk within {limit:g}s"),
                        started,
                    )
                except Exception as exc:
                    await attempts.failed(attempt, classify_unexpected(exc), started)
                else:
                    attempts.succeeded(attempt, started)
                    served = attempt
                    break
                await _close(upstream)
            if served is None or upstream is None or first is None:
                raise attempts.final_error()
        finally:
            attempts.abandon()

        chunk_hooks = has_impls(hook.turnout_stream_chunk)
        options = ctx.request.stream_options
        wants_usage = options is not None and bool(options.include_usage)
        usage: Usage | None = None
        try:
            current: ChatChunk | None = first
            while current is not None:
                if current.usage is not None:
                    usage = current.usage
                    if not wants_usage and not current.choices:
                        # providers ask upstream for usage (for cost); the caller did not
                        current = await self._next_chunk(upstream, attempts)
                        continue
                if chunk_hooks:
                    current = await call_chain(hook.turnout_stream_chunk, "chunk", current, ctx=ctx)
                    assert current is not None
                yield current
                current = await self._next_chunk(upstream, attempts)
        except ProviderError as exc:
            await attempts.failed(served, exc, self.clock())
            raise TurnoutError(
                f"{served.name}: stream interrupted after it started: {exc.message}",
                status_code=502,
                type="api_error",
                code="stream_interrupted",
            ) from exc
        finally:
            await _close(upstream)
        fields = self._extra_fields(ctx, served, usage)
        if attempts.account is not None:
            await attempts.account.settle(served, usage=usage, cost=fields.cost, final=True)
        yield fields

    async def _next_chunk(
        self, upstream: AsyncIterator[ChatChunk], attempts: Attempts
    ) -> ChatChunk | None:
        remaining = attempts.remaining()
        try:
            if remaining is None:
                return await anext(upstream)
            async with asyncio.timeout(max(remaining, 0)):
                return await anext(upstream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ProviderError(
                FailureClass.TIMEOUT, "the route's total timeout passed mid-stream"
            ) from None
        except ProviderError:
            raise
        except Exception as exc:
            raise classify_unexpected(exc) from exc

    async def _pre_request(self, ctx: RequestContext) -> ChatResponse | None:
        original = ctx.request
        short: ChatResponse | None = await call_first(self.hook.turnout_pre_request, ctx=ctx)
        if ctx.request is not original:  # a hook rewrote it: validate what it wrote
            try:
                ctx.request = ChatRequest.model_validate(ctx.request.model_dump(warnings=False))
            except ValidationError as exc:
                raise TurnoutError(
                    f"a pre-request hook produced an invalid request: {exc.errors()[0]['msg']}",
                    status_code=500,
                    type="api_error",
                    code="plugin_error",
                ) from None
        return short

    # -- shadow traffic --------------------------------------------------------

    def _shadow(self, ctx: RequestContext) -> None:
        """Mirror this request to the route's shadow target, after the response.

        Runs as a background task: never delays or alters the caller's answer.
        The result goes to ``turnout_shadow_finished`` observers only.
        """
        assert ctx.route.shadow is not None
        target, share = ctx.route.shadow
        if share < 1 and self.rng.random() >= share:
            return
        task = asyncio.get_running_loop().create_task(self._run_shadow(ctx, target))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _run_shadow(self, ctx: RequestContext, target: CompiledTarget) -> None:
        provider = target.provider
        weights = provider.key_weights
        key = None
        if weights:
            key = provider.api_keys[weighted_index(weights, self.rng) if len(weights) > 1 else 0]
        request = ctx.request
        if request.stream:
            request = request.model_copy(update={"stream": None, "stream_options": None})
        call = ProviderCall(
            request,
            target.model,
            key,
            timeout=ctx.route.timeout.total,
            client_factory=partial(self.clients.client, provider),
        )
        started = self.clock()
        outcome, status, message, cost = "ok", None, None, None
        try:
            async with asyncio.timeout(ctx.route.timeout.total):
                response = await provider.provider.chat(call)
            if response.usage is not None:
                cost = target.info.cost(
                    response.usage.prompt_tokens, response.usage.completion_tokens, response.usage
                )
        except ProviderError as exc:
            outcome, status, message = exc.failure.value, exc.status_code, exc.message
        except Exception as exc:
            error = classify_unexpected(exc)
            outcome, message = error.failure.value, error.message
        record = AttemptRecord(
            provider=provider.name,
            model=target.model,
            outcome=outcome,
            latency_ms=round((self.clock() - started) * 1000, 3),
            status_code=status,
            message=message,
        )
        await call_observers(self.hook.turnout_shadow_finished, ctx=ctx, record=record, cost=cost)

    async def aclose(self) -> None:
        """Wait for shadow requests still running (they are never cut short)."""
        if self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)

    # -- accounting ----------------------------------------------------------

    def _extra_fields(
        self, ctx: RequestContext, attempt: Attempt, usage: Usage | None, raw: Any = None
    ) -> ExtraFields:
        """The seed's extra_fields for a served request, built in one go (hot path)."""
        request = ctx.request
        cost = billed = None
        if usage is not None:
            cost = attempt.target.info.cost(usage.prompt_tokens, usage.completion_tokens, usage)
            billed = BilledUsage(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
            )
        return ExtraFields(
            provider=attempt.provider,
            request_type="chat_completion_stream" if ctx.stream else "chat_completion",
            model_requested=request.model,
            model_params={
                name: value
                for name in _MODEL_PARAMS
                if (value := getattr(request, name)) is not None
            },
            latency=int(self._ms(ctx)),
            billed_usage=billed,
            raw_response=raw if attempt.target.provider.provider.settings.raw_response else None,
            route=ctx.route.name,
            request_id=ctx.request_id,
            cost=cost,
            attempts=ctx.trail,
        )

    def _ms(self, ctx: RequestContext) -> float:
        return (self.clock() - ctx.started) * 1000

    async def _deliver(
        self,
        ctx: RequestContext,
        response: ChatResponse,
        outcome: RequestOutcome,
        respond: Respond | None,
    ) -> None:
        """Hand the response to ``respond``, then tell the observers."""
        if respond is None:
            await self._finish(ctx, outcome)
            return
        try:
            await respond(response)
        finally:
            await self._finish(ctx, outcome)

    async def _finish(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
        """Call the ``turnout_request_finished`` observers, once per request."""
        if ctx.finished:
            return
        ctx.finished = True
        await call_observers(self.hook.turnout_request_finished, ctx=ctx, outcome=outcome)


async def _close(upstream: AsyncIterator[ChatChunk] | None) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
