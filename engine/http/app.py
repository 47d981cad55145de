"""The gateway as a raw ASGI 3 application: endpoints in, engine calls, bytes out.

Request bytes → ``parse_request`` → ``engine.chat`` / ``engine.stream`` →
response bytes. Routing decisions are the engine's; this module only maps
paths to handlers and errors to HTTP responses. It is raw ASGI rather than a
framework because the per-request work a framework adds (request objects,
middleware stack, routing by regex) was measurable next to the engine's own
cost; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from turnout import metrics
from turnout.engine import Engine, parse_request
from turnout.errors import TurnoutError
from turnout.http import sse
from turnout.http.asgi import Receive, Scope, Send
from turnout.http.disconnect import DisconnectWatch
from turnout.http.drain import Drain
from turnout.http.messages import MessagesEndpoints
from turnout.http.operator import OperatorEndpoints
from turnout.http.reload import PolicyReloader
from turnout.http.surfaces import SurfaceEndpoints, error_headers
from turnout.http.ui.dashboard import Dashboard
from turnout.http.ui.recent import RecentRequests
from turnout.http.wire import (
    explain_invalid_json,
    header_dict,
    internal_error,
    read_request_body,
    request_id,
    send_error,
    send_json,
)
from turnout.routing.planner import NoRouteError
from turnout.run.deadline import Deadline
from turnout.run.streams import ChatStream
from turnout.wire.chat import AttemptRecord, ChatResponse

__all__ = ["Gateway"]

log = structlog.get_logger("turnout.http")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

CHAT_ENDPOINT = "/v1/chat/completions"


def _ms(records: list[AttemptRecord] | list[dict[str, Any]]) -> float:
    return sum(r["latency_ms"] if isinstance(r, dict) else r.latency_ms for r in records)


def _cost_header(cost: float | None) -> tuple[tuple[bytes, bytes], ...]:
    """``x-turnout-cost``: USD of the request (the attempt that served), when priced."""
    return () if cost is None else ((b"x-turnout-cost", f"{cost:.6f}".encode()),)


class _Rejected(TurnoutError):
    """An error raised before the engine saw the request (so no observer logged it)."""

    @classmethod
    def of(cls, error: TurnoutError) -> _Rejected:
        out = cls(
            error.message,
            status_code=error.status_code,
            type=error.type,
            code=error.code,
            param=error.param,
        )
        out.extra_fields = error.extra_fields
        return out


_UNROUTED = (_Rejected, NoRouteError)

_CACHE_HEADERS = {
    status: [(b"x-turnout-cache", status.upper().encode())] for status in ("hit", "miss", "bypass")
}
"""``X-Turnout-Cache`` for the outcome a cache plugin reported; none without a cache."""


class Gateway:
    """The ASGI app of ``turnout serve``.

    :param engine: the engine every request goes through.
    :param reloader: watches the policy file and SIGHUP; started and stopped
        with the ASGI lifespan. None: no hot reload.
    :param body_timeout: seconds a client may take to send its request body
        (slow clients get 408).
    :param drain: notices SIGTERM / SIGINT (from the lifespan on), after which
        ``/ready`` answers 503. None: ``/ready`` never reports draining.
    """

    def __init__(
        self,
        engine: Engine,
        reloader: PolicyReloader | None = None,
        *,
        body_timeout: float = 30.0,
        drain: Drain | None = None,
    ) -> None:
        self.engine = engine
        self.reloader = reloader
        self.body_timeout = body_timeout
        self.drain = drain
        self._metrics = metrics.GatewayMetrics(engine.metrics)
        surfaces = SurfaceEndpoints(
            lambda: self.engine, body_timeout, self._count, self._metrics.in_flight
        )
        messages = MessagesEndpoints(
            lambda: self.engine, body_timeout, self._count, self._metrics.in_flight
        )
        operator = OperatorEndpoints(lambda: self.engine, drain, self._count)
        self._prefixes: tuple[tuple[str, str, Handler], ...] = (
            ("/v1/responses/", "GET, DELETE", surfaces.response_item),
            ("/v1/models/", "GET", surfaces.model),
            ("/models/", "GET", surfaces.model),
        )
        self._routes: dict[str, tuple[str, Handler]] = {
            "/v1/responses": ("POST", surfaces.responses),
            "/v1/completions": ("POST", surfaces.completions),
            "/v1/messages": ("POST", messages.messages),
            "/v1/messages/count_tokens": ("POST", messages.count_tokens),
            "/v1/embeddings": ("POST", surfaces.embeddings),
            CHAT_ENDPOINT: ("POST", self.chat_completions),
            "/chat/completions": ("POST", self.chat_completions),
            "/v1/models": ("GET", operator.models),
            "/v1/budgets": ("GET", operator.budgets),
            "/models": ("GET", operator.models),
            "/metrics": ("GET", operator.metrics),
            "/health": ("GET", operator.health),
            "/ready": ("GET", operator.ready),
            "/openapi.json": ("GET", operator.openapi),
        }
        self._dashboard: Dashboard | None = None
        if engine.table.policy.gateway.ui:
            self._dashboard_on()
        self._ui_paths = {
            "/ui",
            "/ui/events",
            "/ui/state",
            "/ui/plan",
            "/ui/login",
            "/ui/app.js",
            "/ui/style.css",
        }
        self._in_flight = self._metrics.in_flight
        self._overhead = self._metrics.overhead.add
        self._responses = self._metrics.responses.add

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            entry = self._routes.get(scope["path"])
            if entry is None and scope["path"] in self._ui_paths:
                entry = self._ui_entry(scope["path"])
            if entry is None:
                entry = self._prefixed(scope)
            if entry is None:
                await self._not_found(scope, send)
            elif scope["method"] not in entry[0].split(", "):
                await self._wrong_method(scope, send, entry[0])
            else:
                await entry[1](scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _prefixed(self, scope: Scope) -> tuple[str, Handler] | None:
        """Endpoints with an id in the path (``/v1/responses/{id}``, ``/v1/models/{id}``)."""
        path: str = scope["path"]
        for prefix, methods, handler in self._prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                allowed = scope["method"] in methods.split(", ")
                return (scope["method"] if allowed else methods), handler
        return None

    def _dashboard_on(self) -> Dashboard:
        """The dashboard, and its request recorder registered on the engine (only
        from the moment the policy turns ``gateway.ui`` on: off, it costs nothing)."""
        if self._dashboard is None:
            recent = RecentRequests()
            self.engine.plugin_manager.register(recent, name="turnout.http.ui")
            self._dashboard = Dashboard(self.engine, recent, self.reloader)
        return self._dashboard

    def _ui_entry(self, path: str) -> tuple[str, Handler] | None:
        if not self.engine.table.policy.gateway.ui:
            return None
        dashboard = self._dashboard_on()
        return dashboard.paths[path], dashboard

    def _count(self, endpoint: str, status: int) -> None:
        self._responses((endpoint, str(status)), 1)

    # -- chat completions ----------------------------------------------------

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._in_flight.inc()
        headers = header_dict(scope)
        rid = request_id(headers, self.engine.table.limits)
        status = 500
        deadline = Deadline()  # the request's one timer: the body, then the route's timeouts
        try:
            status = await self._chat(scope, headers, rid, receive, send, deadline)
        except TurnoutError as exc:
            status = exc.status_code
            if isinstance(exc, _UNROUTED):
                log.info(
                    "request rejected",
                    request_id=rid,
                    status_code=status,
                    error_code=exc.code,
                    error=exc.message,
                )
            await send_error(send, exc, self._error_headers(rid, exc))
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception:
            log.exception("request failed unexpectedly", request_id=rid)
            await send_error(send, internal_error(rid), [(b"x-request-id", rid.encode())])
        finally:
            deadline.close()
            self._in_flight.dec()
            self._count(CHAT_ENDPOINT, status)

    async def _chat(
        self,
        scope: Scope,
        headers: dict[str, str],
        rid: str,
        receive: Receive,
        send: Send,
        deadline: Deadline,
    ) -> int:
        engine = self.engine
        limits = engine.table.policy.gateway
        try:
            body = await read_request_body(
                receive, headers, limits, engine.table.limits, self.body_timeout, deadline
            )
        except TurnoutError as exc:
            raise _Rejected.of(exc) from None
        started = time.perf_counter()
        try:
            request = parse_request(body)
        except TurnoutError as exc:
            raise _Rejected.of(explain_invalid_json(body, exc)) from None
        if len(request.messages) > limits.max_messages:
            raise _Rejected(
                f"the request has {len(request.messages)} messages, more than the gateway's "
                f"limit of {limits.max_messages}; send fewer or raise gateway.max_messages",
                code="too_many_messages",
                param="messages",
            )

        async def respond(response: ChatResponse) -> None:
            """Write the answer; the request log and metrics run after it (Engine.chat)."""
            watcher.cancel()  # answered: a disconnect from now on is uvicorn's end of response
            payload = response.model_dump_json().encode()
            fields = response.extra_fields
            attempts = fields.attempts if fields is not None else []
            overhead = (time.perf_counter() - started) * 1000 - _ms(attempts)
            served = attempts[-1] if attempts else None
            await send_json(
                send,
                200,
                payload,
                [
                    (b"x-request-id", rid.encode()),
                    (b"x-turnout-route", (fields.route or "").encode() if fields else b""),
                    (b"x-turnout-provider", (served.provider if served else "").encode()),
                    (b"x-turnout-model", (served.model if served else "").encode()),
                    (b"x-turnout-attempts", str(len(attempts)).encode()),
                    (b"x-turnout-overhead-ms", f"{overhead:.3f}".encode()),
                    *_CACHE_HEADERS.get(fields.cache if fields else None, ()),  # type: ignore[arg-type]
                    *_cost_header(fields.cost if fields else None),
                ],
            )
            self._overhead((), overhead / 1000)

        # From here a client that leaves cancels the work (and the upstream call);
        # the watch is disarmed as soon as the answer is complete.
        watcher = DisconnectWatch(scope, receive)
        try:
            if request.stream:
                deadline.close()
                stream = engine.stream(request, headers=headers, request_id=rid, events=True)
                await self._stream(stream, started, rid, send, watcher)
            else:
                await engine.chat(
                    request, headers=headers, request_id=rid, respond=respond, deadline=deadline
                )
        except asyncio.CancelledError:
            if watcher.client_left():
                return 499  # the engine logged it as cancelled; nobody to answer
            raise
        finally:
            watcher.cancel()
        return 200

    async def _stream(
        self,
        stream: ChatStream,
        started: float,
        rid: str,
        send: Send,
        watcher: DisconnectWatch,
    ) -> None:
        try:
            first: Any = await anext(stream, None)
            if first is None:
                raise TurnoutError(
                    "the upstream stream ended without a chunk",
                    status_code=502,
                    type="api_error",
                    code="empty_stream",
                )
            trail = stream.trail
            overhead = (time.perf_counter() - started) * 1000 - _ms(trail)
            self._overhead((), overhead / 1000)
            attempt = stream.attempt
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        *sse.SSE_HEADERS,
                        (b"x-request-id", rid.encode()),
                        (b"x-turnout-route", stream.plan.route.name.encode()),
                        (b"x-turnout-provider", (attempt.provider if attempt else "").encode()),
                        (b"x-turnout-model", (attempt.model if attempt else "").encode()),
                        (b"x-turnout-attempts", str(len(trail)).encode()),
                        (b"x-turnout-overhead-ms", f"{overhead:.3f}".encode()),
                        *_CACHE_HEADERS.get(stream.cache, ()),  # type: ignore[arg-type]
                    ],
                }
            )
            if stream.relayed:
                error = await sse.write_events(stream, first, send)
            else:
                error = await sse.write_chunks(stream, first, send)
            watcher.cancel()  # the body is complete: a disconnect now is only its end
            if error is not None:
                log.warning("stream ended by an error", request_id=rid, code=error.code)
        finally:
            await stream.aclose()

    def _error_headers(self, rid: str, error: TurnoutError) -> list[tuple[bytes, bytes]]:
        return error_headers(rid, error)

    async def _not_found(self, scope: Scope, send: Send) -> None:
        error = TurnoutError(
            f"no endpoint {scope['method']} {scope['path']}; turnout serves "
            f"POST {CHAT_ENDPOINT}, /v1/responses, /v1/messages, /v1/completions, "
            "/v1/embeddings, GET /v1/models, /v1/models/{id}, /v1/responses/{id}, /v1/budgets, "
            "/metrics, /health, /ready and /openapi.json",
            status_code=404,
            code="unknown_url",
        )
        await send_error(send, error)
        self._count("other", 404)

    async def _wrong_method(self, scope: Scope, send: Send, allowed: str) -> None:
        error = TurnoutError(
            f"{scope['path']} takes {allowed}, not {scope['method']}",
            status_code=405,
            code="method_not_allowed",
        )
        await send_error(send, error, [(b"allow", allowed.encode())])
        self._count("other", 405)

    # -- lifespan ------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.reloader is not None:
                        self.reloader.start()
                    if self.drain is not None:
                        self.drain.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.reloader is not None:
                    await self.reloader.stop()
                if self.drain is not None:
                    self.drain.stop()
                with contextlib.suppress(Exception):
                    await self.engine.aclose()
                if metrics.multiprocess_dir():
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
                await send({"type": "lifespan.shutdown.complete"})
                return
