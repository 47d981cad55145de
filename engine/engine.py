"""The Engine: one object that loads a policy and routes chat completions."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import httpx2 as httpx
import pluggy
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from turnout.contract.registry import (
    Registry,
    close_plugins,
    collect_registry,
    make_plugin_manager,
    start_plugins,
)
from turnout.errors import PolicyError, Problem, TurnoutError
from turnout.policy.compile import compile_policy
from turnout.policy.loader import Document, load_document, parse_document
from turnout.policy.table import RoutingTable
from turnout.routing.plan import Plan
from turnout.routing.planner import plan_request
from turnout.run.context import RequestContext
from turnout.run.deadline import Deadline
from turnout.run.executor import Executor, Respond
from turnout.run.ledger import BudgetLedger, make_backend, state_identity
from turnout.run.operation import CHAT_STREAM, Operation, StreamOperation
from turnout.run.passthrough import EventsOperation, relays_events
from turnout.run.streams import ChatStream
from turnout.state import StateBackend, StateSnapshot
from turnout.state.stats import TargetStats
from turnout.surfaces.completion_ops import CompletionsAPI
from turnout.surfaces.embeddings import EmbeddingsAPI
from turnout.surfaces.messages import MessagesAPI
from turnout.surfaces.responses import ResponsesAPI
from turnout.upstream.clients import ClientPool
from turnout.wire.chat import ChatRequest, ChatResponse

__all__ = ["Engine", "parse_request"]

RequestLike = ChatRequest | Mapping[str, Any] | bytes | str
R = TypeVar("R")


def parse_request(request: RequestLike) -> ChatRequest:
    """Validate a request once; TurnoutError (400 missing/malformed, 422 invalid value)."""
    if isinstance(request, ChatRequest):
        return request
    try:
        if isinstance(request, bytes | str):
            return ChatRequest.model_validate_json(request)
        return ChatRequest.model_validate(request)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "json_invalid":
            raise TurnoutError(
                f"the body is not valid JSON: {first['msg']}", code="invalid_json"
            ) from None
        status = 400 if first["type"] in ("missing", "model_type", "too_short") else 422
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]]
        raise TurnoutError(
            "invalid request: " + "; ".join(parts),
            status_code=status,
            code="invalid_request",
            param=param,
        ) from None


class Engine:
    """Routes OpenAI-format chat completions as a policy says.

    Build it with ``Engine.from_file("routes.yaml")``. ``chat``, ``stream`` and
    ``plan`` take a request as a dict, JSON bytes or a ``ChatRequest``. Each
    request takes one snapshot of the compiled policy and keeps it for all its
    attempts; ``reload`` compiles a new policy completely before swapping it in.
    """

    def __init__(
        self,
        table: RoutingTable,
        plugin_manager: pluggy.PluginManager,
        registry: Registry,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        source: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        state: StateBackend | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.plugin_manager = plugin_manager
        self.registry = registry
        self.provider_types = dict(registry.providers)
        self._table = table
        self._source = source
        self._env = env
        self.rng = rng or random.Random()
        self.clients = ClientPool(transport)
        self.stats = TargetStats(decay=table.policy.defaults.latency_decay)
        self.ledger = BudgetLedger(state or make_backend(table.limits), wall=wall)
        """Budgets, rate limits and breakers: the state backend ``state:`` chose."""
        self._state_given = state is not None  # a backend passed in: ``state:`` does not apply
        self._state_used = state_identity(table.limits) if table.limits is not None else None
        """The ``state:`` the backend was built for, once a policy meters anything."""
        self.executor = Executor(
            plugin_manager, self.clients, rng=self.rng, stats=self.stats, ledger=self.ledger
        )
        self.state = StateSnapshot(stats=self.stats)
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()
        self._closed = False
        self.metrics = CollectorRegistry()
        """This engine's Prometheus metrics (the gateway serves them at ``/metrics``)."""
        start_plugins(plugin_manager, self.metrics)
        self.executor.runtime.hooks.select(table)  # the hooks each route calls

    # -- construction --------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Engine:
        """Load, validate and compile ``path``; raise PolicyError listing every problem.

        Keyword arguments: ``plugins`` (extra plugin objects), ``autoload``
        (entry-point plugins), ``env`` (for ``${VAR}``; default os.environ),
        ``transport`` (an httpx2 transport for every upstream client), ``rng``.
        """
        return cls._build(lambda env: load_document(path, env), source=path, **kwargs)

    @classmethod
    def from_yaml(cls, text: str, *, file: str = "<policy>", **kwargs: Any) -> Engine:
        """Like ``from_file``, from policy text."""
        return cls._build(lambda env: parse_document(text, file=file, env=env), **kwargs)

    @classmethod
    def _build(
        cls,
        read: Any,
        *,
        plugins: Iterable[Any] = (),
        autoload: bool | None = None,
        env: Mapping[str, str] | None = None,
        source: Any = None,
        **kwargs: Any,
    ) -> Engine:
        pm = make_plugin_manager(plugins, autoload=autoload)
        registry = collect_registry(pm)
        document: Document = read(env)
        table = compile_policy(
            document, registry.providers, registry.strategies, registry.guardrails
        )
        return cls(table, pm, registry, source=source, env=env, **kwargs)

    @property
    def table(self) -> RoutingTable:
        """The compiled policy in force."""
        return self._table

    def reload(self, path: str | os.PathLike[str] | None = None) -> RoutingTable:
        """Compile the policy file again and swap it in; on PolicyError keep the old one.

        ``state:`` (see ``_apply_state``): a backend nothing was metered on yet is
        rebuilt as the new policy says; one in use is never swapped, so a policy
        naming another backend, file, URL or prefix is rejected with a problem
        naming ``state:`` (its counters, holds and breakers live there, and
        requests in flight settle there). Restart to move them."""
        source = path or self._source
        if source is None:
            raise ValueError("this engine was not built from a file; pass the path to reload")
        table = compile_policy(
            load_document(source, self._env),
            self.registry.providers,
            self.registry.strategies,
            self.registry.guardrails,
        )
        self._apply_state(table, os.fspath(source))
        self.executor.runtime.hooks.select(table)
        self._table = table
        self.stats.decay = table.policy.defaults.latency_decay
        self._source = source
        return table

    def _apply_state(self, table: RoutingTable, file: str) -> None:
        """Make the ledger's backend the one ``table``'s ``state:`` names, or raise
        PolicyError naming ``state:`` when that would move live counters."""
        if self._state_given or table.limits is None:
            return  # a backend passed in, or nothing metered: ``state:`` does not apply
        wanted = state_identity(table.limits)
        if self._state_used is None:  # nothing was ever metered: an empty memory backend
            if wanted != ("memory",):
                self.ledger = BudgetLedger(make_backend(table.limits), wall=self.ledger.wall)
                self.executor.ledger = self.ledger  # before the table: requests see both
            self._state_used = wanted
        elif wanted != self._state_used:
            raise PolicyError(
                [
                    Problem(
                        f"state: changed ({_describe_state(self._state_used, wanted)}); a reload"
                        " cannot move budget counters, holds and breakers to another backend",
                        file=file,
                        hint="restart turnout to apply it; the previous policy keeps serving",
                    )
                ]
            )

    # -- requests ------------------------------------------------------------

    def plan(
        self,
        request: RequestLike,
        *,
        headers: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> Plan:
        """The plan for ``request``: pure, no call is made."""
        return plan_request(
            parse_request(request),
            self._table,
            headers=headers,
            state=self.state,
            rng=rng or self.rng,
        )

    def _context(
        self,
        request: RequestLike,
        headers: Mapping[str, str] | None,
        request_id: str | None,
        stream: bool,
        prompt_tokens: int | None = None,
    ) -> RequestContext:
        if self._closed:
            raise _closed_error()
        started = self.executor.clock()
        table = self._table
        keys = table.limits.keys if table.limits is not None else None
        key = keys.authenticate(headers or {}) if keys is not None else None  # 401, body unread
        parsed = parse_request(request)
        plan = plan_request(
            parsed,
            table,
            headers=headers,
            state=self.state,
            rng=self.rng,
            key=key,
            prompt_tokens=prompt_tokens,
        )
        if key is not None and not key.allows(plan.route.name, parsed.model):
            raise TurnoutError(
                f"API key {key.name!r} may not use model {parsed.model!r} "
                f"(route {plan.route.name!r})",
                status_code=403,
                type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        ctx = RequestContext(
            parsed, request_id or os.urandom(16).hex(), headers or {}, table, plan, started, stream
        )
        ctx.key = key
        return ctx

    async def chat(
        self,
        request: RequestLike,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        respond: Respond | None = None,
        deadline: Deadline | None = None,
    ) -> ChatResponse:
        """Route one non-streaming request; raise TurnoutError when it cannot be served.

        :param respond: awaited with the response as soon as it is served,
            before the ``turnout_request_finished`` observers (request log,
            metrics) run; the gateway writes its answer there so they do not
            delay it. ``chat`` still returns the response, after the observers.
        :param deadline: the request's one timer (``turnout.run.deadline``), when
            the caller already runs it under one (the gateway's body timeout);
            the route's timeouts reuse it. Default: a new one.
        """
        ctx = self._context(request, headers, request_id, stream=False)
        return await self.executor.chat(ctx, respond, deadline)

    def stream(
        self,
        request: RequestLike,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        op: StreamOperation[Any] | None = None,
        events: bool = False,
    ) -> ChatStream:
        """Route one streaming request. Planning errors raise here; upstream errors
        raise while iterating (before the first chunk only once every attempt failed).

        :param op: another streamed request kind (see ``turnout.run.serve``); its
            chunks are what the operation's ``relay`` gives out.
        :param events: the caller takes Server-Sent Events bytes (the gateway):
            when nothing on the route needs parsed chunks, the stream's items are
            ``RelayedEvents`` and ``ChatStream.relayed`` is True
            (``turnout.run.passthrough``); else they are chunks, as without it."""
        ctx = self._context(request, headers, request_id, stream=True)
        if op is None:
            if events and relays_events(self.executor.runtime.hooks.of(ctx.route)):
                relay: StreamOperation[Any] = EventsOperation.of(ctx)
                return ChatStream(self.executor.serving(ctx, relay), relayed=True)
            op = CHAT_STREAM
        return ChatStream(self.executor.serving(ctx, op))

    async def serve(
        self,
        request: RequestLike,
        op: Operation[R],
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        deliver: Respond | None = None,
        prompt_tokens: int | None = None,
    ) -> R:
        """Route one request of another kind (``op``, see ``turnout.run.serve``):
        ``request`` is its planning view as a chat request (model, prompt for the
        token estimate, ``max_tokens``); ``op`` says what each attempt calls on the
        provider and how its answer is read. Planning, budgets, hooks, retries,
        fallbacks, settlement and observers are the chat path's.

        :param prompt_tokens: the size planning uses (route conditions, the
            context-window check) instead of the view's estimate; embeddings
            pass their largest input's, as the window applies per input."""
        ctx = self._context(request, headers, request_id, stream=False, prompt_tokens=prompt_tokens)
        return await self.executor.serving(ctx, op).serve(deliver)

    @property
    def responses(self) -> ResponsesAPI:
        """OpenAI's Responses API over this engine (``turnout.surfaces.responses``):
        ``await engine.responses.create({...})``, ``.stream``, ``.retrieve``,
        ``.delete``, ``.input_items``."""
        return ResponsesAPI(self)

    @property
    def messages(self) -> MessagesAPI:
        """Anthropic's Messages API over this engine (``turnout.surfaces.messages``):
        ``await engine.messages.create({...})``, ``.stream``, ``.count_tokens``;
        native to targets that speak it, translated for the others."""
        return MessagesAPI(self)

    @property
    def embeddings(self) -> EmbeddingsAPI:
        """Embeddings over this engine (``turnout.surfaces.embeddings``):
        ``await engine.embeddings.create({"model": ..., "input": [...]})``."""
        return EmbeddingsAPI(self)

    @property
    def completions(self) -> CompletionsAPI:
        """Legacy text completions over this engine, as one chat turn each."""
        return CompletionsAPI(self)

    def chat_sync(
        self,
        request: RequestLike,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> ChatResponse:
        """``chat`` for callers without an event loop (runs on the engine's own loop thread)."""
        loop = self._loop()
        future = asyncio.run_coroutine_threadsafe(
            self.chat(request, headers=headers, request_id=request_id), loop
        )
        try:
            return future.result(timeout)
        except (KeyboardInterrupt, concurrent.futures.TimeoutError):
            future.cancel()
            raise

    def _loop(self) -> asyncio.AbstractEventLoop:
        with self._sync_lock:
            if self._closed:
                raise _closed_error()
            if self._sync_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="turnout-sync", daemon=True)
                thread.start()
                self._sync_loop, self._sync_thread = loop, thread
            return self._sync_loop

    async def aclose(self) -> None:
        """Close the engine, once: wait for shadow requests, close the plugins'
        per-engine state (``turnout_engine_closed``), the state backend, the
        upstream clients and providers, and stop ``chat_sync``'s loop thread.

        Later calls return at once; requests after it get 503 ``engine_closed``."""
        if not self._mark_closed():
            return
        await self.executor.aclose()
        await close_plugins(self.plugin_manager)
        await self.ledger.aclose()
        await self.clients.aclose()
        for provider in self._table.providers.values():
            await provider.provider.aclose()
        loop = self._sync_loop
        if loop is not None and loop is not asyncio.get_running_loop():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.clients.aclose(), loop))
            self._stop_sync_loop()

    def close(self) -> None:
        """``aclose`` for synchronous code (``with Engine.from_file(...) as engine:``).

        Runs on ``chat_sync``'s loop if it was used (its clients live there),
        otherwise on a loop of its own. From async code, ``await engine.aclose()``:
        blocking an event loop here would stall it, so that raises RuntimeError."""
        if self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("Engine.close() blocks: from async code use await engine.aclose()")
        loop = self._sync_loop
        if loop is None:
            asyncio.run(self.aclose())
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
        self._stop_sync_loop()

    def _mark_closed(self) -> bool:
        """True for the one call that closes the engine."""
        with self._sync_lock:
            if self._closed:
                return False
            self._closed = True
            return True

    def _stop_sync_loop(self) -> None:
        with self._sync_lock:
            loop, thread = self._sync_loop, self._sync_thread
            self._sync_loop = self._sync_thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()
            loop.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Engine {self._table.file}: {len(self._table.routes)} routes>"


def _closed_error() -> TurnoutError:
    return TurnoutError(
        "this engine is closed", status_code=503, type="api_error", code="engine_closed"
    )


def _describe_state(before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    """``memory -> sqlite state.db``; a redis URL is never shown (it may hold a password)."""
    if before[0] == after[0] == "redis":
        return "another redis url, prefix or timeout"

    def one(identity: tuple[Any, ...]) -> str:
        return f"sqlite {identity[1]}" if identity[0] == "sqlite" else str(identity[0])

    return f"{one(before)} -> {one(after)}"
