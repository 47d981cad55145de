"""The response cache as a hook plugin.

A route caches when its ``cache`` (over ``defaults.cache``) is on.
``turnout_pre_request`` looks the request up and, on a hit, answers with the
stored response (a stream replays it as chunks); ``turnout_post_response``
stores complete non-streaming responses; a stream's chunks are accumulated by
``turnout_stream_chunk`` and stored by ``turnout_request_finished`` once the
stream ended well; an embeddings answer (``object: "list"``, the vectors in
``data``) is stored by ``turnout_request_finished`` too, after the caller
has it. The outcome is ``ctx.cache`` and ``extra_fields.cache`` —
``hit``, ``miss`` or ``bypass`` — which the gateway sends as ``X-Turnout-Cache``.

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

State is per engine: ``turnout_engine_started`` registers a ``ResponseCache``
on the engine's plugin manager, which holds the stores and the cache metrics
and closes its Redis clients when the engine closes. The in-memory store
belongs to one compiled policy: a reload starts it empty.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import pluggy
import structlog
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from turnout.plugin_api import (
    CacheConfig,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    CompiledRoute,
    ExtraFields,
    RequestContext,
    RequestOutcome,
    ResponseMessage,
    RoutingTable,
    TurnoutError,
    Usage,
    for_routes,
    hookimpl,
    parse_duration,
)
from turnout.plugins.cache.key import cache_key, cache_namespace
from turnout.plugins.cache.memory import MemoryStore
from turnout.plugins.cache.redis import RedisStore
from turnout.plugins.cache.store import CacheStore, CacheUnavailable

__all__ = ["ResponseCache", "turnout_engine_started"]

log = structlog.get_logger("turnout.cache")

SCRATCH = "turnout.plugins.cache"


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


def _cached(route: CompiledRoute) -> bool:
    """The cache's hooks run only on routes that turn the cache on."""
    return route.cache is not None


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


def _cacheable(request: ChatRequest, config: CacheConfig) -> bool:
    if config.sampled:
        return True
    return request.temperature == 0


# -- store ---------------------------------------------------------------------


EMBEDDINGS = "list"
"""``object`` of an embeddings answer as the engine hands it to hooks: no
choices, the vectors in ``data`` (``turnout.surfaces.embeddings``)."""


def _complete(response: ChatResponse) -> bool:
    if response.object == EMBEDDINGS:
        return bool(response.model_extra and response.model_extra.get("data"))
    return bool(response.choices) and all(
        c.finish_reason is not None and c.finish_reason != "content_filter"
        for c in response.choices
    )


def _accumulate(pending: _Pending, chunk: ChatChunk) -> None:
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


# -- the per-engine cache --------------------------------------------------------


class ResponseCache:
    """One engine's response cache: its stores, its metrics, and the hooks.

    In-memory stores are kept per compiled policy and size (a reload starts
    empty); Redis stores per URL and timeout, closed with the engine.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "turnout_cache_lookups",
            'Response cache lookups by route and result: "hit", "miss", or "bypass" '
            "(not cacheable, or the caller said no-cache).",
            ["route", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "turnout_cache_errors",
            "Cache backend failures (each one served as a miss, or not stored), by backend "
            'and operation ("get" or "set").',
            ["backend", "operation"],
            registry=registry,
        )
        self._memory: weakref.WeakKeyDictionary[RoutingTable, dict[int, MemoryStore]] = (
            weakref.WeakKeyDictionary()
        )
        self._redis: dict[tuple[str, float], RedisStore] = {}
        self._children: dict[tuple[str, str], Any] = {}

    def store_for(self, table: RoutingTable, config: CacheConfig) -> CacheStore:
        """The store a route's config names: memory per policy and size, Redis per URL."""
        if config.backend == "redis":
            key = (config.url, config.timeout)
            store = self._redis.get(key)
            if store is None:
                store = self._redis[key] = RedisStore(config.url, config.timeout)
            return store
        stores = self._memory.get(table)
        if stores is None:
            stores = self._memory[table] = {}
        memory = stores.get(config.max_entries)
        if memory is None:
            memory = stores[config.max_entries] = MemoryStore(config.max_entries)
        return memory

    def _report(self, ctx: RequestContext, result: str) -> None:
        ctx.cache = result
        key = (ctx.route.name, result)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.lookups.labels(*key)
        child.inc()

    def _error(
        self, ctx: RequestContext, store: CacheStore, operation: str, exc: Exception
    ) -> None:
        self.errors.labels(store.name, operation).inc()
        log.warning(
            "cache backend failed; served as a miss"
            if operation == "get"
            else "cache store failed",
            request_id=ctx.request_id,
            route=ctx.route.name,
            backend=store.name,
            error=str(exc),
        )

    async def _store(self, ctx: RequestContext, pending: _Pending, response: ChatResponse) -> None:
        if not _complete(response):
            return
        value = response.model_dump_json(exclude={"extra_fields"}, exclude_none=True).encode()
        try:
            await pending.store.set(pending.key, value, pending.ttl)
        except CacheUnavailable as exc:
            self._error(ctx, pending.store, "set", exc)

    @hookimpl(specname="turnout_pre_request")
    @for_routes(lambda route: route.cache is None)
    def drop_control(self, ctx: RequestContext) -> None:
        """A route without a cache: the body's ``cache`` object is not sent upstream."""
        extra = ctx.request.model_extra
        if extra and "cache" in extra:
            ctx.request = _without_control(ctx.request)

    @hookimpl
    @for_routes(_cached)
    async def turnout_pre_request(self, ctx: RequestContext) -> ChatResponse | None:
        request = ctx.request
        extra = request.model_extra
        body = extra.get("cache") if extra else None
        if body is not None:
            ctx.request = request = _without_control(request)
        config = ctx.route.cache
        if config is None:
            return None
        control = request_control(body, ctx.headers)
        if (control.no_cache and control.no_store) or not _cacheable(request, config):
            self._report(ctx, "bypass")
            return None
        caller = cache_namespace(ctx, config)
        key = cache_key(request, ctx.route, prefix=config.prefix, caller=caller)
        store = self.store_for(ctx.table, config)
        if not control.no_store:
            ttl = min(config.ttl, control.ttl) if control.ttl is not None else config.ttl
            ctx.scratch[SCRATCH] = _Pending(store, key, ttl)
        if control.no_cache:
            self._report(ctx, "bypass")
            return None
        try:
            value = await store.get(key)
        except CacheUnavailable as exc:
            self._error(ctx, store, "get", exc)
            value = None
        hit = None
        if value is not None:
            try:
                hit = ChatResponse.model_validate_json(value)
            except ValidationError as exc:
                self._error(ctx, store, "get", exc)
        if hit is None:
            self._report(ctx, "miss")
            return None
        self._report(ctx, "hit")
        ctx.scratch.pop(SCRATCH, None)
        hit.extra_fields = ExtraFields(
            request_type="chat_completion_stream" if ctx.stream else "chat_completion",
            model_requested=request.model,
            route=ctx.route.name,
            request_id=ctx.request_id,
            cost=0.0,
            cache="hit",
        )
        return hit

    @hookimpl(trylast=True)
    @for_routes(_cached)
    async def turnout_post_response(self, ctx: RequestContext, response: ChatResponse) -> None:
        if ctx.cache is None:
            return
        if response.extra_fields is not None:
            response.extra_fields.cache = ctx.cache
        pending = ctx.scratch.pop(SCRATCH, None)
        if pending is not None:
            await self._store(ctx, pending, response)

    @hookimpl(trylast=True)
    @for_routes(_cached)
    def turnout_stream_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> None:
        pending: _Pending | None = ctx.scratch.get(SCRATCH)
        if pending is not None:
            _accumulate(pending, chunk)

    @hookimpl
    @for_routes(_cached)
    async def turnout_request_finished(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
        if outcome.status != "ok" or outcome.short_circuit:
            return
        if not ctx.stream:  # embeddings are stored here, after the caller has them
            response = outcome.response
            if response is not None and response.object == EMBEDDINGS:
                pending_whole: _Pending | None = ctx.scratch.pop(SCRATCH, None)
                if pending_whole is not None:
                    await self._store(ctx, pending_whole, response)
            return
        pending: _Pending | None = ctx.scratch.pop(SCRATCH, None)
        if pending is None or pending.chunks is None:
            return
        await self._store(ctx, pending, _assembled(pending.chunks))

    @hookimpl
    async def turnout_engine_closed(self) -> None:
        """Close every Redis client this engine opened."""
        stores, self._redis = list(self._redis.values()), {}
        for store in stores:
            await store.aclose()
        self._memory.clear()


@hookimpl
def turnout_engine_started(
    plugin_manager: pluggy.PluginManager, metrics: CollectorRegistry
) -> None:
    plugin_manager.register(ResponseCache(metrics), name="turnout.plugins.cache.engine")
