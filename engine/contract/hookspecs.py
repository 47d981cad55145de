"""Every hook turnout calls, in one place.

Plugins implement these with ``@turnout.hookimpl``. Request-phase hooks may be
``async def``: the engine awaits each result in pluggy's order (``tryfirst`` /
``trylast`` respected). Hooks run in a request are given the request's
``RequestContext``; they must not keep it past the request.

Lifecycle: ``turnout_engine_started`` fires once when an engine is built and
``turnout_engine_closed`` once when it is closed. A plugin that keeps state
(stores, connections, metrics) registers a per-engine object from the first
(``plugin_manager.register(...)``, as pytest's own plugins do from
``pytest_configure``) and releases it in the second; module globals would be
shared by every engine in the process.

Failure policy: a pre-request or post-response hook that raises fails the
request (guardrails fail closed); an observer hook (``turnout_on_error``,
``turnout_request_finished``) that raises is logged and ignored (fails open).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from turnout.contract.guardrail import Guardrail
    from turnout.contract.provider import Provider
    from turnout.contract.strategy import Strategy
    from turnout.errors import ProviderError
    from turnout.routing.plan import Attempt
    from turnout.run.context import RequestContext, RequestOutcome
    from turnout.wire.chat import AttemptRecord, ChatChunk, ChatResponse

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "turnout"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

RegisterProvider = Callable[[str, "type[Provider]"], None]
RegisterStrategy = Callable[[str, "type[Strategy]"], None]
RegisterGuardrail = Callable[[str, "type[Guardrail]"], None]


# --------------------------------------------------------------------------
# registration: called once, when an Engine is built
# --------------------------------------------------------------------------


@hookspec
def turnout_register_providers(register: RegisterProvider) -> None:
    """Register provider types.

    Called once per engine, before the policy is compiled.

    :param register: call ``register(type_name, ProviderClass)`` for each type
        the plugin provides; ``type_name`` is what routes.yaml writes as a
        provider's ``type``. Registering a name another plugin already
        registered is an error naming both plugins.
    """


@hookspec
def turnout_register_strategies(register: RegisterStrategy) -> None:
    """Register routing strategies.

    Called once per engine, before the policy is compiled.

    :param register: call ``register(name, StrategyClass)`` for each strategy the
        plugin provides; ``name`` is what a route writes as its ``strategy``
        (``weighted`` is the engine's own). Registering a name another plugin
        already registered is an error naming both plugins.
    """


@hookspec
def turnout_register_guardrails(register: RegisterGuardrail) -> None:
    """Register guardrail types.

    Called once per engine, before the policy is compiled.

    :param register: call ``register(name, GuardrailClass)`` for each guardrail
        the plugin provides; ``name`` is what a route lists under ``guardrails``
        (``pii``, ``secrets``, ``deny``, ``limits`` and ``json_schema`` come from
        ``turnout.plugins.guardrails``). The class subclasses ``turnout.Guardrail``; its
        ``Options`` model validates the options routes.yaml gives it. Registering
        a name another plugin already registered is an error naming both plugins.
    """


# --------------------------------------------------------------------------
# lifecycle: once per engine, around every request it serves
# --------------------------------------------------------------------------


@hookspec
def turnout_engine_started(
    plugin_manager: pluggy.PluginManager, metrics: CollectorRegistry
) -> None:
    """Set up per-engine state, once, when an engine has been built.

    Fires after the registration hooks and the first policy compile, before
    the engine serves any request. Synchronous (an engine is built outside any
    event loop); open connections lazily, on the first request. An exception
    here fails building the engine.

    :param plugin_manager: the engine's own plugin manager; register an object
        whose methods implement the request hooks to keep state per engine
        (``plugin_manager.register(ResponseCache(), name="...")``).
    :param metrics: the engine's Prometheus registry: create the plugin's
        metrics on it (``Counter(..., registry=metrics)``); the gateway serves
        it at ``GET /metrics``, merged across ``--workers``.
    """


@hookspec
def turnout_engine_closed() -> Awaitable[None] | None:
    """Release per-engine state (connections, files, tasks), once.

    Fires from ``await engine.aclose()`` or ``engine.close()`` (also on
    leaving ``with engine:`` / ``async with engine:``; only the first close
    counts), after the last request and shadow call, before the engine closes
    its upstream clients; the gateway calls it when it shuts down. May be
    async. A failure is logged and the other implementations still run.
    """


# --------------------------------------------------------------------------
# request: may change the outcome of the request
# --------------------------------------------------------------------------


@hookspec
def turnout_pre_request(
    ctx: RequestContext,
) -> ChatResponse | Awaitable[ChatResponse | None] | None:
    """Inspect a request after it is planned and before any upstream call.

    Fires once per request, streaming or not. Implementations may be async.

    :param ctx: the request context: ``ctx.request`` (validated request, which
        may be replaced with ``ctx.request = ...``, e.g. to redact it),
        ``ctx.route``, ``ctx.plan``, ``ctx.headers``, ``ctx.request_id``.
    :return: None to go on; a ``ChatResponse`` to answer without calling any
        upstream (a cache hit); the first non-None result wins and later
        implementations are not called. Raise ``TurnoutError`` to refuse the
        request with that error (a guardrail block).
    """


@hookspec
def turnout_post_response(
    ctx: RequestContext, response: ChatResponse
) -> ChatResponse | Awaitable[ChatResponse | None] | None:
    """Inspect a successful, complete non-streaming response before it is returned.

    Not called for a response a pre-request hook returned. Implementations may
    be async.

    :param ctx: the request context; ``ctx.attempt`` is the attempt that served.
    :param response: the response, ``extra_fields`` filled in.
    :return: None to keep the response, or a replacement (e.g. redacted) that
        the next implementation then sees. Raise ``TurnoutError`` to refuse it;
        raise ``ProviderError`` to count the attempt as failed with that class,
        so the route retries or falls back as for an upstream failure (e.g. the
        output is not the JSON the request asked for).
    """


@hookspec
def turnout_stream_chunk(
    ctx: RequestContext, chunk: ChatChunk
) -> ChatChunk | Awaitable[ChatChunk | None] | None:
    """Inspect each chunk of a stream before it is sent to the caller.

    Only called when at least one plugin implements it, so the streaming path
    stays cheap otherwise. Implementations may be async.

    :param ctx: the request context; ``ctx.attempt`` is the attempt streaming.
    :param chunk: the chunk in OpenAI format.
    :return: None to pass the chunk on, or a replacement chunk. Raise
        ``TurnoutError`` to end the stream with that error.
    """


# --------------------------------------------------------------------------
# observation: never changes the outcome; failures are logged and ignored
# --------------------------------------------------------------------------


@hookspec
def turnout_upstream_headers(ctx: RequestContext, attempt: Attempt) -> Mapping[str, str] | None:
    """Headers to add to one upstream call (e.g. W3C ``traceparent``).

    Called synchronously just before each attempt is sent, retries included;
    the headers of every implementation are merged (a later plugin's win) and
    sent after the provider's own headers, before its key. Keep it cheap: it
    runs once per attempt on the request path. Return None to add nothing.
    """


@hookspec
def turnout_on_error(ctx: RequestContext, attempt: Attempt, error: ProviderError) -> None:
    """Observe one failed upstream attempt (before any retry or fallback).

    :param ctx: the request context.
    :param attempt: the planned attempt that failed.
    :param error: the classified failure.
    """


@hookspec
def turnout_shadow_finished(ctx: RequestContext, record: AttemptRecord, cost: float | None) -> None:
    """Observe the result of a shadow request (a route's ``shadow`` target).

    Fires after the mirrored call ends; the caller's response went out before.

    :param ctx: the context of the request that was mirrored.
    :param record: target, outcome (``ok`` or a failure class) and latency.
    :param cost: USD the shadow call cost, if priced.
    """


@hookspec
def turnout_request_finished(
    ctx: RequestContext, outcome: RequestOutcome
) -> Awaitable[None] | None:
    """Observe a finished request: one call per request, whatever happened.

    Fires after the response is complete (after the last chunk for a stream),
    on error and on cancellation. Use it for logs and metrics.

    :param ctx: the request context, with the attempt trail in ``ctx.trail``.
    :param outcome: status (``ok`` / ``error`` / ``cancelled``), HTTP status,
        latency, usage and cost, the response or error.
    """
