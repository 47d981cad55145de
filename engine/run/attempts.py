"""The attempt loop: which call comes next, retries with backoff, and the final error.

Used by the serve path (``turnout.run.serve``) for every request kind; decisions
are made from the FailureClass alone. It keeps the request's attempt trail
(``ctx.trail``, ``ctx.attempt``) and the live in-flight stats; budgets are not
its business (the serve path reserves and settles them around each call).
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import structlog
from turnout.contract.calls import call_observers, has_impls, upstream_headers
from turnout.contract.provider import NO_HEADERS, ProviderCall
from turnout.errors import CALLER_FAULTS, FailureClass, ProviderError, TurnoutError
from turnout.policy.models import Retry
from turnout.routing.plan import Attempt, Plan, SkipReason
from turnout.run.context import RequestContext
from turnout.run.runtime import Runtime
from turnout.wire.chat import AttemptRecord

__all__ = [
    "Attempts",
    "backoff_delay",
    "classify_unexpected",
    "empty_plan_error",
    "skipped_fields",
]

log = structlog.get_logger("turnout.executor")


def backoff_delay(retry: Retry, failures: int, rng: random.Random) -> float:
    """Exponential backoff after the ``failures``-th failure, with full jitter."""
    ceiling = min(retry.max_backoff, retry.backoff * (2 ** (failures - 1)))
    return rng.uniform(0, ceiling) if retry.jitter else ceiling


_QUOTA_REASONS = frozenset({SkipReason.BUDGET, SkipReason.RATE_LIMITED})


def skipped_fields(plan: Plan) -> dict[str, Any]:
    """``{"skipped": [...]}``: the targets the plan left out and why (an error's
    ``extra_fields``), or nothing when it left none out."""
    records = plan.skip_records()
    return {} if records is None else {"skipped": records}


def empty_plan_error(plan: Plan) -> TurnoutError:
    """Why no attempt could be made: a 4xx if the request itself is too big or too
    dear for every target, else 503."""
    error = _empty_plan_error(plan)
    error.extra_fields = {**error.extra_fields, **skipped_fields(plan)}
    return error


def _empty_plan_error(plan: Plan) -> TurnoutError:
    reasons = {skip.reason for skip in plan.skipped}
    detail = "; ".join(f"{s.name}: {s.detail}" for s in plan.skipped) or "the route has no targets"
    if reasons and reasons <= _QUOTA_REASONS | {SkipReason.DUPLICATE} and reasons & _QUOTA_REASONS:
        budget = SkipReason.BUDGET in reasons
        return TurnoutError(
            f"every target of route {plan.route.name!r} is over a "
            f"{'budget' if budget else 'rate limit'}: {detail}",
            status_code=429,
            type="insufficient_quota" if budget else "rate_limit_error",
            code="budget_exceeded" if budget else "rate_limit_exceeded",
        )
    if reasons and reasons <= {
        SkipReason.COST_CAP,
        SkipReason.CONTEXT_WINDOW,
        SkipReason.DUPLICATE,
    }:
        if SkipReason.COST_CAP in reasons:
            return TurnoutError(
                f"every target of route {plan.route.name!r} is over the cost cap: {detail}",
                status_code=400,
                code="cost_cap_exceeded",
                param="max_tokens",
            )
        return TurnoutError(
            f"the prompt does not fit any target of route {plan.route.name!r}: {detail}",
            status_code=400,
            code="context_length_exceeded",
            param="messages",
        )
    return TurnoutError(
        f"no target of route {plan.route.name!r} is available: {detail}",
        status_code=503,
        type="api_error",
        code="no_target_available",
    )


class Attempts:
    """The retry and fallback loop of one request."""

    def __init__(self, rt: Runtime, ctx: RequestContext, hook: Any = None) -> None:
        self.rt = rt
        self.ctx = ctx
        self.hook = hook if hook is not None else rt.hooks.of(ctx.route)
        total = ctx.route.timeout.total
        self.deadline = ctx.started + total if total else None
        self.last_error: ProviderError | None = None
        self.timed_out = False
        self._index = 0
        self._tries = 0
        self._open: Attempt | None = None
        self._calling: tuple[Attempt, float] | None = None  # the call in flight, and since when

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - self.rt.clock()

    def skip(self) -> tuple[Attempt, ProviderCall] | None:
        """The call just returned will not be made (its target has no room in a
        budget): the first call to the next target instead, or None."""
        self._calling = None
        self._unopen()
        self._index += 1
        self._tries = 0
        attempts = self.ctx.plan.attempts
        return self._call(attempts[self._index]) if self._index < len(attempts) else None

    async def next_call(self) -> tuple[Attempt, ProviderCall] | None:
        """The next upstream call to make (after any backoff), or None when the
        request is over: served, refused, out of attempts or out of time.

        Call ``failed``, ``succeeded`` or ``skip`` after each call it returns.
        """
        retry = self.ctx.route.retry
        attempts = self.ctx.plan.attempts
        if self._tries:  # the call before this one
            error = self.last_error
            if error is None or error.failure in CALLER_FAULTS:
                return None
            if error.failure in retry.on and self._tries < retry.attempts:
                delay = backoff_delay(retry, self._tries, self.rt.rng)
                if error.retry_after is not None:
                    # an upstream that wants longer than we ever wait: next target
                    delay = (
                        max(delay, error.retry_after)
                        if error.retry_after <= retry.max_backoff
                        else -1
                    )
                remaining = self.remaining()
                if delay >= 0 and (remaining is None or delay < remaining):
                    await self.rt.sleep(delay)
                    return self._call(attempts[self._index])
            self._index += 1
        if self._index >= len(attempts):
            return None
        self._tries = 0
        return self._call(attempts[self._index])

    def _call(self, attempt: Attempt) -> tuple[Attempt, ProviderCall] | None:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            self.timed_out = True
            return None
        self._tries += 1
        self.ctx.attempt = attempt
        self._calling = (attempt, self.rt.clock())
        stats = self.rt.stats
        if stats is not None:
            stats.started(attempt.name)
            self._open = attempt
        provider = attempt.target.provider
        key = provider.api_keys[attempt.key_index] if attempt.key_index is not None else None
        hook = self.hook.turnout_upstream_headers
        call = ProviderCall(
            self.ctx.request,
            attempt.model,
            key,
            timeout=remaining,
            client_factory=partial(self.rt.clients.client, provider),
            upstream_factory=partial(self.rt.clients.upstream, provider),
            headers=upstream_headers(hook, self.ctx, attempt) if has_impls(hook) else NO_HEADERS,
        )
        return attempt, call

    def _settle(self, latency: float | None) -> None:
        self._calling = None
        stats = self.rt.stats
        if self._open is not None and stats is not None:
            stats.finished(self._open.name, latency)
            self._open = None

    def abandon(self) -> None:
        """The request ended; a call still in flight was cut short (the caller went
        away, or the server is shutting down) and goes on the trail as cancelled,
        so logs and metrics name the provider that was being called."""
        calling, self._calling = self._calling, None
        if calling is not None:
            attempt, started = calling
            message = "cut short before the upstream answered"
            self._record(attempt, started, FailureClass.CANCELLED.value, message=message)
        self._unopen()

    def _unopen(self) -> None:
        stats = self.rt.stats
        if self._open is not None and stats is not None:
            stats.cancelled(self._open.name)
            self._open = None

    async def failed(self, attempt: Attempt, error: ProviderError, started: float) -> None:
        self._settle(None)
        self.last_error = error
        self._record(attempt, started, error.failure.value, error.status_code, error.message)
        await call_observers(self.hook.turnout_on_error, ctx=self.ctx, attempt=attempt, error=error)

    def succeeded(self, attempt: Attempt, started: float) -> None:
        self._settle(self.rt.clock() - started)
        self.last_error = None
        self._record(attempt, started, "ok")

    def _record(
        self,
        attempt: Attempt,
        started: float,
        outcome: str,
        status_code: int | None = None,
        message: str | None = None,
    ) -> None:
        """Put one upstream call on the request's attempt trail."""
        self.ctx.trail.append(
            AttemptRecord(
                provider=attempt.provider,
                model=attempt.model,
                outcome=outcome,
                latency_ms=round((self.rt.clock() - started) * 1000, 3),
                status_code=status_code,
                message=message,
                why=attempt.why(self.ctx.route),
                started=started,
            )
        )

    def final_error(self, refused: TurnoutError | None = None) -> TurnoutError:
        """Why the request could not be served; ``refused``: the first budget
        refusal, which wins when no upstream call was made."""
        ctx = self.ctx
        error = self.last_error
        if refused is not None and (error is None or not ctx.trail):
            return refused
        if error is None or self.timed_out:
            out = TurnoutError(
                f"route {ctx.route.name!r}: total timeout of {ctx.route.timeout.total:g}s exceeded"
                f" after {len(ctx.trail)} attempt(s)",
                status_code=504,
                type="api_error",
                code="timeout",
            )
        elif error.failure in CALLER_FAULTS:
            out = error.to_turnout_error(provider=ctx.trail[-1].provider, model=ctx.trail[-1].model)
        else:
            last = ctx.trail[-1]
            out = error.to_turnout_error(provider=last.provider, model=last.model)
            if len(ctx.trail) > 1:
                summary = "; ".join(f"{r.provider}/{r.model}: {r.outcome}" for r in ctx.trail)
                out.message = (
                    f"all {len(ctx.trail)} attempts failed ({summary}); last: {out.message}"
                )
        out.extra_fields = {
            **out.extra_fields,
            "route": ctx.route.name,
            "request_id": ctx.request_id,
            "model_requested": ctx.request.model,
            "attempts": [r.model_dump() for r in ctx.trail],
            **skipped_fields(ctx.plan),
        }
        return out


def classify_unexpected(exc: Exception) -> ProviderError:
    if isinstance(exc, TimeoutError):
        return ProviderError(FailureClass.TIMEOUT, "no answer before the route's total timeout")
    log.error("provider raised an unexpected exception", exc_info=exc)
    return ProviderError(
        FailureClass.SERVER_ERROR, f"provider failed unexpectedly: {type(exc).__name__}"
    )
