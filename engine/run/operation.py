"""Request kinds: what the serve path calls on a provider, and how it reads the answer.

The serve path (``turnout.run.serve``) is the same for every kind of request —
planning, budgets, pre-request hooks, retries, fallbacks, settlement, shadows,
observers. What differs is an ``Operation`` (a whole answer) or a
``StreamOperation`` (an answer in chunks): which provider method an attempt
calls, how usage is read from the answer, the worst case a budget holds
before the call, what post-response hooks run, and how a pre-request hook's
short-circuit answer becomes this kind's answer. ``CHAT`` and ``CHAT_STREAM``
are the chat completions kinds; see ``turnout.run.serve`` for how a new
surface plugs in its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar, cast

from turnout.contract.calls import call_chain, has_impls
from turnout.contract.provider import Provider, ProviderCall
from turnout.routing.plan import Attempt, Plan
from turnout.run.account import WorstCase
from turnout.run.context import RequestContext
from turnout.run.streams import chunks_from_response
from turnout.wire.chat import BilledUsage, ChatChunk, ChatResponse, ExtraFields, Usage

__all__ = [
    "CHAT",
    "CHAT_STREAM",
    "Operation",
    "StreamOperation",
    "served_fields",
]

R = TypeVar("R")
C = TypeVar("C")

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


def chat_worst_case(attempt: Attempt, plan: Plan) -> WorstCase:
    """The most an attempt can bill: a prompt no tokenizer exceeds (``plan.prompt_bound``
    when set) plus the most output the target can bill for each of ``plan.choices``
    (the limit the attempt's provider sends: ``Attempt.output_ceiling``).
    The output bound comes from the smaller estimate (a context window leaves the
    most room for output then), so both parts over-cover."""
    info = attempt.target.info
    bound = info.output_bound(plan.prompt_tokens, attempt.output_limit(plan.output_limit))
    if bound is None:
        return WorstCase(None, attempt.estimated_cost)
    prompt = max(plan.prompt_tokens, plan.prompt_bound or 0)
    output = bound * max(plan.choices, 1)
    if prompt == plan.prompt_tokens and output == bound:
        return WorstCase(prompt + output, attempt.estimated_cost)
    cost = info.worst_case_cost(prompt, output)
    return WorstCase(prompt + output, attempt.estimated_cost if cost is None else cost)


class _Kind:
    """What every operation shares: its ``request_type`` and the chat worst case
    (override ``worst_case`` for a kind that bills differently, e.g. embeddings:
    the prompt only)."""

    request_type = "chat_completion"

    def worst_case(self, attempt: Attempt, plan: Plan) -> WorstCase:
        return chat_worst_case(attempt, plan)


class Operation(_Kind, Generic[R]):
    """A request kind answered in one piece, of type ``R``.

    The default is chat completions; a native passthrough (a provider's own
    ``messages()`` or ``embeddings()``) overrides ``call`` and ``usage``, and
    usually ``accept`` and ``short_circuit``.
    """

    def call(self, provider: Provider, call: ProviderCall) -> Awaitable[R]:
        """One upstream call; return the answer or raise ProviderError."""
        return cast(Awaitable[R], provider.chat(call))

    def usage(self, result: R) -> Usage | None:
        """The answer's token usage (settles budgets, prices the request)."""
        return cast(ChatResponse, result).usage

    async def accept(
        self, ctx: RequestContext, attempt: Attempt, result: R, fields: ExtraFields, hook: Any
    ) -> R:
        """Attach ``fields`` and run post-response hooks; raising ProviderError
        rejects this attempt's answer (the next attempt is tried)."""
        response = cast(ChatResponse, result)
        raw = response.extra_fields.raw_response if response.extra_fields else None
        redactor = ctx.table.redactor
        if raw is not None and attempt.target.provider.provider.settings.raw_response:
            fields.raw_response = redactor.json(raw)
        if redactor and response.__pydantic_extra__:  # fields turnout does not know, passed on
            response.__pydantic_extra__ = redactor.json(response.__pydantic_extra__)
        response.extra_fields = fields
        return cast(R, await call_chain(hook.turnout_post_response, "response", response, ctx=ctx))

    def short_circuit(self, response: ChatResponse) -> R:
        """A pre-request hook answered (the cache): that answer as this kind's."""
        return cast(R, response)

    def outcome_response(self, result: R) -> ChatResponse | None:
        """What the ``turnout_request_finished`` observers see as the response
        (the request log, a cache storing it); None when there is none."""
        return result if isinstance(result, ChatResponse) else None


class StreamOperation(_Kind, Generic[C]):
    """A request kind answered as a stream of chunks of type ``C``."""

    request_type = "chat_completion_stream"

    def open(self, provider: Provider, call: ProviderCall) -> AsyncIterator[C]:
        """Start one upstream stream (an async iterator that raises ProviderError)."""
        return cast(AsyncIterator[C], provider.stream(call))

    def usage(self, chunk: C) -> Usage | None:
        """Usage carried by ``chunk``, if any (the last one seen counts)."""
        return cast(ChatChunk, chunk).usage

    def relay(self, ctx: RequestContext, hook: Any) -> Callable[[C], Awaitable[C | None]]:
        """Per stream: what turns an upstream chunk into the caller's (None drops it)."""
        hooks = has_impls(hook.turnout_stream_chunk)
        options = ctx.request.stream_options
        wants_usage = options is not None and bool(options.include_usage)
        redactor = ctx.table.redactor

        async def relay(chunk: Any) -> Any:
            if not wants_usage and chunk.usage is not None and not chunk.choices:
                return None  # providers ask upstream for usage (for cost); the caller did not
            if redactor and chunk.__pydantic_extra__:  # fields turnout does not know, passed on
                chunk.__pydantic_extra__ = redactor.json(chunk.__pydantic_extra__)
            if hooks:
                return await call_chain(hook.turnout_stream_chunk, "chunk", chunk, ctx=ctx)
            return chunk

        return relay

    def replay(self, response: ChatResponse) -> Iterable[C]:
        """A pre-request hook's whole answer, as this kind's chunks."""
        return cast(Iterable[C], chunks_from_response(response))


CHAT: Operation[ChatResponse] = Operation()
CHAT_STREAM: StreamOperation[ChatChunk] = StreamOperation()


def served_fields(
    ctx: RequestContext,
    attempt: Attempt,
    usage: Usage | None,
    cost: float | None,
    request_type: str,
    latency_ms: float,
) -> ExtraFields:
    """The seed's extra_fields for a served request, built in one go (hot path)."""
    request = ctx.request
    billed = None
    if usage is not None:
        billed = BilledUsage(
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        )
    return ExtraFields(
        provider=attempt.provider,
        request_type=request_type,
        model_requested=request.model,
        model_params={
            name: value for name in _MODEL_PARAMS if (value := getattr(request, name)) is not None
        },
        latency=int(latency_ms),
        billed_usage=billed,
        route=ctx.route.name,
        request_id=ctx.request_id,
        cost=cost,
        attempts=ctx.trail,
        skipped=ctx.plan.skip_records(),
    )
