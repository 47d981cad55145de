"""The serve path: one request from its plan to its observers, for every kind.

``Serving`` is the request's lifecycle owner. It opens the budget account (and
takes the plan the ledger returns, restricted to what fits), runs the
pre-request hooks, walks the attempt loop (reserving each attempt's worst case
before the call, settling it after), hands the answer over, starts the shadow
and calls the ``turnout_request_finished`` observers once. Nothing else opens,
settles or releases the account: success, failure and cancellation all end here.

The kind of request is a value the path is parameterised by
(``turnout.run.operation``):

- ``Serving(rt, ctx, op).serve(deliver)`` for an ``Operation[R]``, answered in
  one piece (``CHAT``: chat completions);
- ``Serving(rt, ctx, op).stream()`` for a ``StreamOperation[C]``, answered in
  chunks (``CHAT_STREAM``); ``fields`` holds the extra_fields once it ended well.

How a new surface plugs in:

(a) **Translated** (inbound format -> ``ChatRequest`` -> the chat path): translate
    the body, call ``Engine.chat`` / ``Engine.stream``, translate the answer
    back. Nothing here changes.
(b) **Native passthrough** (the attempt calls another provider operation, e.g. a
    provider's ``messages(body)`` or ``embeddings(body)``): build the planning
    view of the request as a ``ChatRequest`` (model, messages or input for the
    token estimate, ``max_tokens``) so routing, budgets and hooks see the usual
    context, and subclass ``Operation`` (or ``StreamOperation``) with the raw
    body on the instance::

        class Embeddings(Operation[EmbeddingsAnswer]):
            request_type = "embeddings"
            def __init__(self, body): self.body = body
            def call(self, provider, call):          # what the attempt calls
                return provider.embeddings(call, self.body)
            def usage(self, answer):                 # settles budgets, prices it
                return Usage(prompt_tokens=answer.tokens, completion_tokens=0, ...)
            def worst_case(self, attempt, plan):     # what a budget holds first
                return WorstCase(plan.prompt_tokens, price_of_prompt(attempt, plan))
            async def accept(self, ctx, attempt, answer, fields, hook):
                answer.extra_fields = fields         # no chat post-response hooks
                return answer
            def short_circuit(self, response):       # a pre-request hook answered
                raise TurnoutError("...", status_code=500, code="plugin_error")

    then ``Engine.serve(planning_request, Embeddings(body), headers=...)``; a
    streamed kind subclasses ``StreamOperation`` (``open``: the provider's
    stream, ``usage`` per chunk, ``relay``: what the caller gets) and goes
    through ``Engine.stream(planning_request, op=...)``, falling back until its
    first chunk exactly like chat. The
    ``ProviderCall`` the operation gets carries the attempt's model, API key,
    remaining timeout and pooled client; the operation's own fields carry the
    native body. Retries, fallbacks (a ``ProviderError`` from ``call`` moves on
    exactly as for chat), settlement, shadows (chat only) and observers come
    from this module unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from turnout.contract.calls import call_first, call_observers
from turnout.contract.provider import ProviderCall
from turnout.errors import FailureClass, ProviderError, TurnoutError
from turnout.policy.limits import RequestFacts
from turnout.routing.plan import Attempt
from turnout.routing.tokens import prompt_bound
from turnout.run.account import RequestAccount
from turnout.run.attempts import Attempts, classify_unexpected, empty_plan_error
from turnout.run.context import RequestContext, RequestOutcome
from turnout.run.deadline import Deadline
from turnout.run.operation import Operation, StreamOperation, served_fields
from turnout.run.runtime import Runtime
from turnout.run.shadow import start_shadow
from turnout.run.stream_deadline import StreamDeadline
from turnout.wire.chat import ChatRequest, ChatResponse, ExtraFields, Usage

__all__ = ["Deliver", "Serving"]

R = TypeVar("R")

Deliver = Callable[[Any], Awaitable[None]]
"""Receives a served answer before the request's observers run."""


class Serving(Generic[R]):
    """One request's lifecycle. Build one per request; call ``serve`` or ``stream`` once."""

    __slots__ = ("account", "attempts", "ctx", "deadline", "fields", "finished", "hook", "op", "rt")

    def __init__(
        self,
        rt: Runtime,
        ctx: RequestContext,
        op: Operation[R] | StreamOperation[R],
        deadline: Deadline | None = None,
    ) -> None:
        self.rt = rt
        self.ctx = ctx
        self.op = op
        self.deadline = deadline if deadline is not None else Deadline()
        """The request's one timer: the route's timeouts (``turnout.run.deadline``)."""
        self.hook = rt.hooks.of(ctx.route)
        """The request hooks this request's route calls."""
        self.account: RequestAccount | None = None
        self.attempts: Attempts | None = None
        self.fields: ExtraFields | None = None
        """The served request's extra_fields, once it ended well."""
        self.finished = False

    # -- a whole answer ------------------------------------------------------

    async def serve(self, deliver: Deliver | None = None) -> R:
        """Serve the request; ``deliver`` (if given) gets the answer before the
        ``turnout_request_finished`` observers run."""
        op = self.op
        assert isinstance(op, Operation)
        try:
            short = await self._open()
            if short is not None:
                answer: R = op.short_circuit(short)
                ok = RequestOutcome("ok", 200, self._ms(), response=short, short_circuit=True)
                await self._deliver(answer, ok, deliver)
                return answer
            _, answer, usage = await self._attempt(self._whole, self._accept)
            fields = self.fields
            cost = fields.cost if fields is not None else None
            response = op.outcome_response(answer)
            ok = RequestOutcome("ok", 200, self._ms(), response=response, usage=usage, cost=cost)
            await self._deliver(answer, ok, deliver)
            if self.ctx.route.shadow is not None:
                start_shadow(self.rt, self.ctx)
            return answer
        except TurnoutError as exc:
            await self._finish(RequestOutcome("error", exc.status_code, self._ms(), error=exc))
            raise
        except asyncio.CancelledError:
            self._cancel()
            await self._finish(RequestOutcome("cancelled", 499, self._ms()))
            raise
        finally:
            self.deadline.close()

    async def _whole(self, provider: Any, call: ProviderCall) -> Any:
        """One upstream call for a whole answer, within the route's total timeout."""
        op = self.op
        assert isinstance(op, Operation)
        return await self.deadline.within(call.timeout, op.call(provider, call))

    async def _accept(self, attempt: Attempt, answer: Any) -> tuple[Any, Usage | None]:
        """A whole answer arrived: settle it, then the operation's post-response step."""
        op = self.op
        assert isinstance(op, Operation)
        usage = op.usage(answer)
        fields = self._served(attempt, usage)
        await self._settled(attempt, usage, fields.cost)
        return await op.accept(self.ctx, attempt, answer, fields, self.hook), usage

    # -- an answer in chunks -------------------------------------------------

    async def stream(self) -> AsyncIterator[R]:
        """Yield chunks; fall back while nothing has been yielded, raise after."""
        op = self.op
        assert isinstance(op, StreamOperation)
        outcome: RequestOutcome | None = None
        try:
            short = await self._open()
            if short is not None:
                for replay in op.replay(short):
                    yield replay
                cache = short.extra_fields.cache if short.extra_fields else None
                ctx = self.ctx
                self.fields = ExtraFields(
                    request_type=op.request_type,
                    model_requested=ctx.request.model,
                    route=ctx.route.name,
                    request_id=ctx.request_id,
                    cache=cache or "short_circuit",
                )
                outcome = RequestOutcome("ok", 200, self._ms(), short_circuit=True)
                return
            served, (upstream, first), _ = await self._attempt(self._first_chunk, None)
            usage: Usage | None = None
            relay = op.relay(self.ctx, self.hook)
            assert self.attempts is not None
            deadline = StreamDeadline(self.attempts.remaining)
            try:
                current: Any = first
                while current is not None:
                    seen = op.usage(current)
                    if seen is not None:
                        usage = seen
                    out = await relay(current)
                    if out is not None:
                        yield out
                    current = await self._next_chunk(upstream, deadline)
            except ProviderError as exc:
                failed = await self._failed(served, exc, self.rt.clock())
                raise TurnoutError(
                    f"{served.name}: stream interrupted after it started: {failed.message}",
                    status_code=502,
                    type="api_error",
                    code="stream_interrupted",
                ) from failed
            finally:
                deadline.cancel()
                await _close(upstream)
            fields = self._served(served, usage)
            await self._settled(served, usage, fields.cost)
            if self.ctx.route.shadow is not None:
                start_shadow(self.rt, self.ctx)
            outcome = RequestOutcome("ok", 200, self._ms(), cost=fields.cost, usage=usage)
        except TurnoutError as exc:
            outcome = RequestOutcome("error", exc.status_code, self._ms(), error=exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self._cancel()
            outcome = RequestOutcome("cancelled", 499, self._ms())
            raise
        finally:
            self.deadline.close()
            if outcome is not None:
                with contextlib.suppress(Exception):
                    await self._finish(outcome)

    async def _first_chunk(self, provider: Any, call: ProviderCall) -> tuple[Any, Any]:
        """Open the upstream stream and wait for its first chunk (the route's
        first-token timeout); a failure here still falls back."""
        op = self.op
        assert isinstance(op, StreamOperation)
        first_token = self.ctx.route.timeout.first_token
        limit = min((t for t in (call.timeout, first_token) if t is not None), default=None)
        upstream = op.open(provider, call)
        try:
            return upstream, await self.deadline.within(limit, anext(upstream))
        except StopAsyncIteration:
            await _close(upstream)
            raise ProviderError(
                FailureClass.CONNECTION, "stream ended before its first chunk"
            ) from None
        except TimeoutError:
            await _close(upstream)
            raise ProviderError(FailureClass.TIMEOUT, f"no first chunk within {limit:g}s") from None
        except BaseException:
            await _close(upstream)
            raise

    async def _next_chunk(self, upstream: AsyncIterator[Any], deadline: StreamDeadline) -> Any:
        try:
            return await deadline.read(upstream)
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

    # -- shared: opening, the attempt loop, settlement -----------------------

    async def _open(self) -> ChatResponse | None:
        """Open the account (the plan becomes the one that fits), run the
        pre-request hooks; their short-circuit answer, or None to go upstream."""
        ctx = self.ctx
        limits = ctx.table.limits
        ledger = self.rt.ledger
        if limits is not None and limits.metered and ledger is not None:
            plan, op = ctx.plan, self.op
            plan.prompt_bound = prompt_bound(ctx.request)  # what the hold covers
            plan.choices = ctx.request.n or 1
            facts = RequestFacts.of(plan.route.name, ctx.request, ctx.key)
            self.account, ctx.plan = await ledger.open(
                limits, plan, facts, lambda attempt: op.worst_case(attempt, plan)
            )  # or refuses (429)
        short = await self._pre_request()
        if short is None and not ctx.plan.attempts:
            raise empty_plan_error(ctx.plan)
        return short

    async def _pre_request(self) -> ChatResponse | None:
        ctx = self.ctx
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

    async def _attempt(
        self,
        call: Callable[[Any, ProviderCall], Awaitable[Any]],
        accept: Callable[[Attempt, Any], Awaitable[tuple[Any, Usage | None]]] | None,
    ) -> tuple[Attempt, Any, Usage | None]:
        """Retries and fallbacks until one attempt's answer is accepted; raises
        the request's error when none is. ``accept`` (whole answers) may reject
        an answer with ProviderError, which moves on like an upstream failure."""
        rt, account = self.rt, self.account
        attempts = self.attempts = Attempts(rt, self.ctx, self.hook)
        try:
            while (next_call := await attempts.next_call()) is not None:
                if account is not None:
                    while next_call is not None and not await account.reserve(next_call[0]):
                        next_call = attempts.skip()
                    if next_call is None:
                        break
                attempt, provider_call = next_call
                started = rt.clock()
                try:
                    answer = await call(attempt.target.provider.provider, provider_call)
                except ProviderError as exc:
                    await self._failed(attempt, exc, started)
                    continue
                except Exception as exc:
                    await self._failed(attempt, classify_unexpected(exc), started)
                    continue
                attempts.succeeded(attempt, started)
                if accept is None:
                    return attempt, answer, None
                try:
                    answer, usage = await accept(attempt, answer)
                except ProviderError as exc:  # a hook rejected this attempt's output
                    self.ctx.trail.pop()
                    await self._failed(attempt, exc, started)
                    continue
                return attempt, answer, usage
            if account is not None:
                await account.close()
            raise attempts.final_error(account.refusal() if account is not None else None)
        finally:
            attempts.abandon()

    def _served(self, attempt: Attempt, usage: Usage | None) -> ExtraFields:
        cost = None
        if usage is not None:
            cost = attempt.target.info.cost(usage.prompt_tokens, usage.completion_tokens, usage)
        fields = self.fields = served_fields(
            self.ctx, attempt, usage, cost, self.op.request_type, self._ms()
        )
        return fields

    async def _settled(self, attempt: Attempt, usage: Usage | None, cost: float | None) -> None:
        if self.account is not None:
            await self.account.settle(attempt, usage=usage, cost=cost, final=True)

    async def _failed(
        self, attempt: Attempt, error: ProviderError, started: float
    ) -> ProviderError:
        """Settle a failed call and put it on the trail, the policy's secrets masked
        out of what the upstream said (the error as the caller and logs get it)."""
        error = self.ctx.table.redactor.error(error)
        if self.account is not None:
            await self.account.settle(attempt, error=error)
        assert self.attempts is not None
        await self.attempts.failed(attempt, error, started)
        return error

    def _cancel(self) -> None:
        """Cancelled: what an attempt in flight held is charged, in the background."""
        if self.account is not None:
            self.account.abandon()

    # -- the end -------------------------------------------------------------

    def _ms(self) -> float:
        return (self.rt.clock() - self.ctx.started) * 1000

    async def _deliver(self, answer: Any, outcome: RequestOutcome, deliver: Deliver | None) -> None:
        """Hand the answer to ``deliver``, then tell the observers."""
        if deliver is None:
            await self._finish(outcome)
            return
        try:
            await deliver(answer)
        finally:
            await self._finish(outcome)

    async def _finish(self, outcome: RequestOutcome) -> None:
        """Call the ``turnout_request_finished`` observers, once per request."""
        if self.finished:
            return
        self.finished = True
        await call_observers(self.hook.turnout_request_finished, ctx=self.ctx, outcome=outcome)


async def _close(upstream: AsyncIterator[Any] | None) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
