"""The response cache as a hook plugin.

A route caches when its ``cache`` (over ``defaults.cache``) is on.
``turnout_pre_request`` looks the request up and, on a hit, answers with the
stored response (a stream replays it as chunks); ``turnout_post_response``
stores complete non-streaming responses; a stream's chunks are accumulated by
``turnout_stream_chunk`` and stored by ``turnout_request_finished`` once the
stream ended well. The outcome is ``extra_fields.cache`` and
``ctx.scratch["cache"]`` — ``hit``, ``miss`` or ``bypass`` — which the gateway
sends as ``X-Turnout-Cache``.

What is cached: only successful, complete responses (every choice finished,
none by ``content_filter``); never errors or streams cut short. Requests that
sample (``temperature`` above 0, or unset — every vendor's default is 1) are
cached only where the route says ``sampled: true``. ``n`` is part of the key.

Per request (documented in docs/plugins.md): a body field
``cache: {no_cache, no_store, ttl}`` (removed before the request goes
upstream), or headers ``Cache-Control: no-cache`` / ``no-store`` and
``X-Turnout-Cache-TTL: 30s``. ``no_cache`` skips the lookup (BYPASS) but
stores the fresh answer; ``no_store`` does not store; a request's ``ttl`` can
shorten the route's, never lengthen it.

A hit costs nothing upstream: ``extra_fields.cost`` is 0, no attempt is made,
and ``turnout_cache_lookups`` counts it. A backend failure (Redis down or
slower than the route's ``timeout``) is logged, counted in
``turnout_cache_errors`` and served as a miss.

The in-memory store belongs to one compiled policy: a reload starts it empty.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError
from turnout import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ExtraFields,
    RequestContext,
    RequestOutcome,
    TurnoutError,
    hookimpl,
)
from turnout.metrics import CACHE_ERRORS, CACHE_LOOKUPS
from turnout.plugins.cache.key import cache_key, cache_namespace
from turnout.plugins.cache.memory import MemoryStore
from turnout.plugins.cache.redis import RedisStore
from turnout.plugins.cache.store import CacheStore, CacheUnavailable
from turnout.policy.compile import RoutingTable
from turnout.policy.models import CacheConfig, parse_duration
from turnout.wire.chat import Choice, ResponseMessage, Usage

__all__ = [
    "turnout_post_response",
    "turnout_pre_request",
    "turnout_request_finished",
    "turnout_stream_chunk",
]

log = structlog.get_logger("turnout.cache")

SCRATCH = "turnout.plugins.cache"
REPORT = "cache"
"""``ctx.scratch["cache"]``: ``hit``, ``miss`` or ``bypass``."""

_memory: weakref.WeakKeyDictionary[RoutingTable, dict[int, MemoryStore]] = (
    weakref.WeakKeyDictionary()
)
_redis: dict[tuple[str, float], RedisStore] = {}


def store_for(table: RoutingTable, config: CacheConfig) -> CacheStore:
    """The store a route's config names: memory per policy and size, Redis per URL."""
    if config.backend == "redis":
        key = (config.url, config.timeout)
        store = _redis.get(key)
        if store is None:
            store = _redis[key] = RedisStore(config.url, config.timeout)
        return store
    stores = _memory.get(table)
    if stores is None:
        stores = _memory[table] = {}
    memory = stores.get(config.max_entries)
    if memory is None:
        memory = stores[config.max_entries] = MemoryStore(config.max_entries)
    return memory


# -- per-request control -------------------------------------------------------


@dataclass(slots=True)
class Control:
    no_cache: bool = False
    no_store: bool = False
    ttl: float | None = None


def _bad(message: str) -> TurnoutError:
    return TurnoutError(message, status_code=400, code="invalid_cache_control", param="cache")


def request_control(body: Any, headers: Any) -> Control:
    """What the caller asked of the cache, from the body's ``cache`` and the headers."""
    control = Control()
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"no_cache", "no_store", "ttl"}:
            raise _bad("cache must be an object with no_cache, no_store and/or ttl")
        for name in ("no_cache", "no_store"):
            value = body.get(name, False)
            if not isinstance(value, bool):
                raise _bad(f"cache.{name} must be true or false")
            setattr(control, name, value)
        if body.get("ttl") is not None:
            try:
                control.ttl = parse_duration(body["ttl"])
            except ValueError as exc:
                raise _bad(f"cache.ttl: {exc}") from None
    directives = headers.get("cache-control")
    if directives:
        for directive in directives.lower().split(","):
            name = directive.strip()
            if name == "no-cache":
                control.no_cache = True
            elif name == "no-store":
                control.no_store = True
    ttl = headers.get("x-turnout-cache-ttl")
    if ttl:
        try:
            control.ttl = parse_duration(ttl)
        except ValueError as exc:
            raise _bad(f"X-Turnout-Cache-TTL: {exc}") from None
    return control


def _without_control(request: ChatRequest) -> ChatRequest:
    copy = request.model_copy()
    if copy.model_extra is not None:
        copy.model_extra.pop("cache", None)
    return copy


# -- lookup --------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A miss to store once the response is known."""

    store: CacheStore
    key: str
    ttl: float
    chunks: _Accumulated | None = None


@dataclass(slots=True)
class _Accumulated:
    """A stream's text so far, per choice."""

    first: ChatChunk
    content: dict[int, list[str]] = field(default_factory=dict)
    role: dict[int, str] = field(default_factory=dict)
    tools: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    usage: Usage | None = None


def _count(route: str, result: str) -> None:
    key = (route, result)
    child = _children.get(key)
    if child is None:
        child = _children[key] = CACHE_LOOKUPS.labels(route, result)
    child.inc()


_children: dict[tuple[str, str], Any] = {}


def _error(ctx: RequestContext, store: CacheStore, operation: str, exc: Exception) -> None:
    CACHE_ERRORS.labels(store.name, operation).inc()
    log.warning(
        "cache backend failed; served as a miss" if operation == "get" else "cache store failed",
        request_id=ctx.request_id,
        route=ctx.route.name,
        backend=store.name,
        error=str(exc),
    )


def _cacheable(request: ChatRequest, config: CacheConfig) -> bool:
    if config.sampled:
        return True
    return request.temperature == 0


@hookimpl
async def turnout_pre_request(ctx: RequestContext) -> ChatResponse | None:
    request = ctx.request
    extra = request.model_extra
    body = extra.get("cache") if extra else None
    if body is not None:
        ctx.request = request = _without_control(request)
    config = ctx.route.cache
    if config is None:
        return None
    control = request_control(body, ctx.headers)
    route = ctx.route.name
    if (control.no_cache and control.no_store) or not _cacheable(request, config):
        ctx.scratch[REPORT] = "bypass"
        _count(route, "bypass")
        return None
    caller = cache_namespace(ctx, config)
    key = cache_key(request, ctx.route, prefix=config.prefix, caller=caller)
    store = store_for(ctx.table, config)
    if not control.no_store:
        ttl = min(config.ttl, control.ttl) if control.ttl is not None else config.ttl
        ctx.scratch[SCRATCH] = _Pending(store, key, ttl)
    if control.no_cache:
        ctx.scratch[REPORT] = "bypass"
        _count(route, "bypass")
        return None
    try:
        value = await store.get(key)
    except CacheUnavailable as exc:
        _error(ctx, store, "get", exc)
        value = None
    hit = None
    if value is not None:
        try:
            hit = ChatResponse.model_validate_json(value)
        except ValidationError as exc:
            _error(ctx, store, "get", exc)
    if hit is None:
        ctx.scratch[REPORT] = "miss"
        _count(route, "miss")
        return None
    ctx.scratch[REPORT] = "hit"
    ctx.scratch.pop(SCRATCH, None)
    _count(route, "hit")
    hit.extra_fields = ExtraFields(
        request_type="chat_completion_stream" if ctx.stream else "chat_completion",
        model_requested=request.model,
        route=route,
        request_id=ctx.request_id,
        cost=0.0,
        cache="hit",
    )
    return hit


# -- store ---------------------------------------------------------------------


def _complete(response: ChatResponse) -> bool:
    return bool(response.choices) and all(
        c.finish_reason is not None and c.finish_reason != "content_filter"
        for c in response.choices
    )


async def _store(ctx: RequestContext, pending: _Pending, response: ChatResponse) -> None:
    if not _complete(response):
        return
    value = response.model_dump_json(exclude={"extra_fields"}, exclude_none=True).encode()
    try:
        await pending.store.set(pending.key, value, pending.ttl)
    except CacheUnavailable as exc:
        _error(ctx, pending.store, "set", exc)


@hookimpl(trylast=True)
async def turnout_post_response(ctx: RequestContext, response: ChatResponse) -> None:
    report = ctx.scratch.get(REPORT)
    if report is None:
        return
    if response.extra_fields is not None:
        response.extra_fields.cache = report
    pending = ctx.scratch.pop(SCRATCH, None)
    if pending is not None:
        await _store(ctx, pending, response)


@hookimpl(trylast=True)
def turnout_stream_chunk(ctx: RequestContext, chunk: ChatChunk) -> None:
    pending: _Pending | None = ctx.scratch.get(SCRATCH)
    if pending is None:
        return
    acc = pending.chunks
    if acc is None:
        acc = pending.chunks = _Accumulated(chunk.model_copy())
    if chunk.usage is not None:
        acc.usage = chunk.usage
    for choice in chunk.choices:
        i = choice.index
        delta = choice.delta
        if delta.role:
            acc.role[i] = delta.role
        if delta.content:
            acc.content.setdefault(i, []).append(delta.content)
        for call in delta.tool_calls or ():
            slot = acc.tools.setdefault(i, {}).setdefault(int(call.get("index", 0)), {})
            for name, value in call.items():
                if name == "index":
                    continue
                if name == "function" and isinstance(value, dict):
                    function = slot.setdefault("function", {"name": "", "arguments": ""})
                    function["name"] += value.get("name") or ""
                    function["arguments"] += value.get("arguments") or ""
                elif value is not None:
                    slot[name] = value
        if choice.finish_reason is not None:
            acc.finish[i] = choice.finish_reason


def _assembled(acc: _Accumulated) -> ChatResponse:
    indexes = sorted(set(acc.role) | set(acc.content) | set(acc.tools) | set(acc.finish))
    choices = [
        Choice(
            index=i,
            message=ResponseMessage(
                role=acc.role.get(i, "assistant"),
                content="".join(acc.content[i]) if i in acc.content else None,
                tool_calls=[acc.tools[i][k] for k in sorted(acc.tools[i])]
                if i in acc.tools
                else None,
            ),
            finish_reason=acc.finish.get(i),
        )
        for i in indexes
    ]
    first = acc.first
    return ChatResponse(
        id=first.id,
        created=first.created,
        model=first.model,
        system_fingerprint=first.system_fingerprint,
        choices=choices,
        usage=acc.usage,
    )


@hookimpl
async def turnout_request_finished(ctx: RequestContext, outcome: RequestOutcome) -> None:
    if not ctx.stream or outcome.status != "ok" or outcome.short_circuit:
        return
    pending: _Pending | None = ctx.scratch.pop(SCRATCH, None)
    if pending is None or pending.chunks is None:
        return
    await _store(ctx, pending, _assembled(pending.chunks))
