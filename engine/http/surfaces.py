"""The gateway's endpoints for the other OpenAI surfaces: ``/v1/responses``
(and its stored-response reads), ``/v1/completions``, ``/v1/embeddings`` and
``/v1/models/{id}``.

Each handler reads the body under the policy's gateway limits, hands it to
its surface (``turnout.surfaces``), and writes the answer or the error in
OpenAI's shape. ``Gateway`` routes to them; they never touch its internals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import structlog
from turnout.engine import Engine
from turnout.errors import TurnoutError
from turnout.http import sse
from turnout.http.asgi import Receive, Scope, Send
from turnout.http.disconnect import DisconnectWatch
from turnout.http.models import build_model_list
from turnout.http.wire import (
    explain_invalid_json,
    header_dict,
    internal_error,
    json_bytes,
    read_request_body,
    request_id,
    send_error,
    send_json,
)
from turnout.metrics import InFlight
from turnout.routing.planner import NoRouteError
from turnout.run.deadline import Deadline
from turnout.surfaces.completions import parse_completion_request
from turnout.surfaces.embeddings import parse_embeddings_request
from turnout.surfaces.responses import parse_responses_request
from turnout.wire.chat import AttemptRecord, ChatResponse, ExtraFields

__all__ = ["SurfaceEndpoints", "error_headers", "fields_headers", "served_headers"]

log = structlog.get_logger("turnout.http")

Headers = list[tuple[bytes, bytes]]


def error_headers(rid: str, error: TurnoutError) -> Headers:
    """``x-request-id``, the attempt count, and ``retry-after`` on a 429 or 503
    that said when to come back (a budget's reset or the upstream's own)."""
    out = [(b"x-request-id", rid.encode())]
    attempts = error.extra_fields.get("attempts")
    if attempts is not None:
        out.append((b"x-turnout-attempts", str(len(attempts)).encode()))
    retry_after = error.extra_fields.get("retry_after")
    if error.status_code in (429, 503) and retry_after is not None:
        out.append((b"retry-after", str(retry_after).encode()))
    return out


def served_headers(rid: str, route: str | None, attempts: Iterable[AttemptRecord]) -> Headers:
    """``x-request-id`` and who served: route, provider, model, attempts."""
    trail = list(attempts)
    last = trail[-1] if trail else None
    return [
        (b"x-request-id", rid.encode()),
        (b"x-turnout-route", (route or "").encode()),
        (b"x-turnout-provider", (last.provider if last else "").encode()),
        (b"x-turnout-model", (last.model if last else "").encode()),
        (b"x-turnout-attempts", str(len(trail)).encode()),
    ]


def fields_headers(rid: str, fields: ExtraFields | None) -> Headers:
    """``served_headers`` from an answer's extra_fields, with its cost and cache outcome."""
    out = served_headers(rid, fields.route if fields else None, fields.attempts if fields else [])
    if fields is not None and fields.cost is not None:
        out.append((b"x-turnout-cost", f"{fields.cost:.6f}".encode()))
    if fields is not None and fields.cache in ("hit", "miss", "bypass"):
        out.append((b"x-turnout-cache", fields.cache.upper().encode()))
    return out


def _sse(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json_bytes(data) + b"\n\n"


class SurfaceEndpoints:
    """The handlers, over the gateway's engine.

    :param engine: a callable returning the engine (the gateway's).
    :param body_timeout: seconds a client may take to send its body (408 after).
    :param count: counts one answer by endpoint and status (``/metrics``).
    :param in_flight: the gateway's in-flight requests gauge.
    """

    def __init__(
        self,
        engine: Callable[[], Engine],
        body_timeout: float,
        count: Callable[[str, int], None],
        in_flight: InFlight,
    ) -> None:
        self._engine = engine
        self.body_timeout = body_timeout
        self._count = count
        self._in_flight = in_flight

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        table = self._engine().table
        return await read_request_body(
            receive, headers, table.policy.gateway, table.limits, self.body_timeout, Deadline()
        )

    async def _guarded(
        self, endpoint: str, scope: Scope, receive: Receive, send: Send, work: Any
    ) -> None:
        """Run ``work(headers, rid)``; errors become OpenAI-shaped answers."""
        self._in_flight.inc()
        headers = header_dict(scope)
        rid = request_id(headers, self._engine().table.limits)
        status = 500
        try:
            status = await work(headers, rid)
        except TurnoutError as exc:
            status = await self.send_error(send, exc, rid)
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception:
            log.exception("request failed unexpectedly", request_id=rid)
            await self.send_error(send, internal_error(rid), rid)
        finally:
            self._in_flight.dec()
            self._count(endpoint, status)

    async def send_error(self, send: Send, error: TurnoutError, rid: str) -> int:
        """Answer with ``error`` in this surface's shape; the status sent."""
        await send_error(send, error, error_headers(rid, error))
        return error.status_code

    async def _watched(self, scope: Scope, receive: Receive, work: Any) -> int:
        """Run ``work()`` cancelled if the client leaves; 499 when it did."""
        watcher = DisconnectWatch(scope, receive)
        try:
            await work(watcher)
        except asyncio.CancelledError:
            if watcher.client_left():
                return 499
            raise
        finally:
            watcher.cancel()
        return 200

    # -- /v1/responses -------------------------------------------------------

    async def responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(
            "/v1/responses", scope, receive, send, self._respond(scope, receive, send)
        )

    def _respond(self, scope: Scope, receive: Receive, send: Send) -> Any:
        async def work(headers: dict[str, str], rid: str) -> int:
            body = await self._body(headers, receive)
            try:
                request = parse_responses_request(body)
            except TurnoutError as exc:
                raise explain_invalid_json(body, exc) from None
            api = self._engine().responses

            async def plain(watcher: DisconnectWatch) -> None:
                async def respond(response: dict[str, Any], chat: ChatResponse) -> None:
                    watcher.cancel()
                    head = fields_headers(rid, chat.extra_fields)
                    await send_json(send, 200, json_bytes(response), head)

                await api.create(request, headers=headers, request_id=rid, respond=respond)

            async def streamed(watcher: DisconnectWatch) -> None:
                stream = await api.stream(request, headers=headers, request_id=rid)
                try:
                    await stream.open()
                    chat = stream.chat
                    head = [
                        *sse.SSE_HEADERS,
                        *served_headers(rid, chat.plan.route.name, chat.trail),
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": head})
                    try:
                        async for event in stream:
                            body = _sse(event["type"], event)
                            await send(
                                {"type": "http.response.body", "body": body, "more_body": True}
                            )
                    except Exception as exc:
                        error = exc if isinstance(exc, TurnoutError) else internal_error(rid)
                        if not isinstance(exc, TurnoutError):
                            log.exception("stream failed unexpectedly", request_id=rid)
                        event = stream.translator.error(error)
                        body = _sse("error", event)
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                    watcher.cancel()
                    await send({"type": "http.response.body", "body": b""})
                finally:
                    await stream.aclose()

            return await self._watched(scope, receive, streamed if request.stream else plain)

        return work

    async def response_item(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET`` / ``DELETE /v1/responses/{id}``, ``GET …/{id}/input_items``."""
        path: str = scope["path"].removeprefix("/v1/responses/")
        response_id, _, rest = path.partition("/")
        method = scope["method"]

        async def work(headers: dict[str, str], rid: str) -> int:
            api = self._engine().responses
            if rest == "input_items" and method == "GET":
                query = {
                    k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()
                }
                try:
                    limit = int(query.get("limit", "20"))
                except ValueError:
                    raise TurnoutError(
                        "limit must be a number", code="invalid_request", param="limit"
                    ) from None
                body = await api.input_items(
                    response_id,
                    headers=headers,
                    order=query.get("order", "desc"),
                    limit=limit,
                    after=query.get("after"),
                )
            elif rest == "" and method == "GET":
                body = await api.retrieve(response_id, headers=headers)
            elif rest == "" and method == "DELETE":
                body = await api.delete(response_id, headers=headers)
            elif rest in ("", "input_items"):
                allowed = "GET" if rest else "GET, DELETE"
                raise TurnoutError(
                    f"{scope['path']} takes {allowed}, not {method}",
                    status_code=405,
                    code="method_not_allowed",
                )
            else:
                raise TurnoutError(
                    f"no endpoint {method} {scope['path']}; a stored response is at "
                    "/v1/responses/{id} and its input at /v1/responses/{id}/input_items",
                    status_code=404,
                    code="unknown_url",
                )
            await send_json(send, 200, json_bytes(body), [(b"x-request-id", rid.encode())])
            return 200

        await self._guarded("/v1/responses/{id}", scope, receive, send, work)

    # -- /v1/completions -----------------------------------------------------

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work(headers: dict[str, str], rid: str) -> int:
            body = await self._body(headers, receive)
            try:
                request = parse_completion_request(body)
            except TurnoutError as exc:
                raise explain_invalid_json(body, exc) from None
            api = self._engine().completions

            async def plain(watcher: DisconnectWatch) -> None:
                answer = await api.create(request, headers=headers, request_id=rid)
                watcher.cancel()
                fields = ExtraFields.model_validate(answer["extra_fields"])
                await send_json(send, 200, json_bytes(answer), fields_headers(rid, fields))

            async def streamed(watcher: DisconnectWatch) -> None:
                stream, op = api.stream(request, headers=headers, request_id=rid)
                try:
                    first: Any = None
                    async for first in stream:
                        if first:
                            break
                    if not first:
                        raise TurnoutError(
                            "the upstream stream ended without a chunk",
                            status_code=502,
                            type="api_error",
                            code="empty_stream",
                        )
                    head = [
                        *sse.SSE_HEADERS,
                        *served_headers(rid, stream.plan.route.name, stream.trail),
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": head})
                    await send({"type": "http.response.body", "body": first, "more_body": True})
                    try:
                        piece: Any
                        async for piece in stream:
                            if piece:
                                await send(
                                    {"type": "http.response.body", "body": piece, "more_body": True}
                                )
                    except TurnoutError as exc:
                        watcher.cancel()
                        await send({"type": "http.response.body", "body": sse.error_event(exc)})
                        return
                    watcher.cancel()
                    tail = sse.DONE if op.translated else b""
                    await send({"type": "http.response.body", "body": tail})
                finally:
                    await stream.aclose()

            return await self._watched(scope, receive, streamed if request.stream else plain)

        await self._guarded("/v1/completions", scope, receive, send, work)

    # -- /v1/embeddings ------------------------------------------------------

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work(headers: dict[str, str], rid: str) -> int:
            body = await self._body(headers, receive)
            try:
                request = parse_embeddings_request(body)
            except TurnoutError as exc:
                raise explain_invalid_json(body, exc) from None
            api = self._engine().embeddings

            async def plain(watcher: DisconnectWatch) -> None:
                async def respond(answer: dict[str, Any], fields: ExtraFields | None) -> None:
                    watcher.cancel()
                    await send_json(send, 200, json_bytes(answer), fields_headers(rid, fields))

                await api.create(request, headers=headers, request_id=rid, respond=respond)

            return await self._watched(scope, receive, plain)

        await self._guarded("/v1/embeddings", scope, receive, send, work)

    # -- /v1/models/{id} -----------------------------------------------------

    async def model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One model: a route alias, a ``provider/model`` the policy names (the
        slash may come as ``%2F``), or a name some route's pattern matches."""
        name: str = scope["path"].removeprefix("/v1/models/").removeprefix("/models/")

        async def work(headers: dict[str, str], rid: str) -> int:
            engine = self._engine()
            limits = engine.table.limits
            key = limits.keys.authenticate(headers) if limits and limits.keys else None  # 401
            for entry in build_model_list(engine.table, key)["data"]:
                if entry["id"] == name:
                    await send_json(send, 200, json_bytes(entry))
                    return 200
            probe = {"model": name, "messages": [{"role": "user", "content": "?"}]}
            with contextlib.suppress(NoRouteError):
                route = engine.plan(probe, headers=headers).route.name
                if key is not None and not key.allows(route, name):
                    raise NoRouteError(name)
                entry = {"id": name, "object": "model", "created": 0, "owned_by": "turnout"}
                await send_json(send, 200, json_bytes({**entry, "kind": "route", "route": route}))
                return 200
            raise TurnoutError(
                f"no model {name!r}: it is not a route alias, a provider/model the policy "
                "names, or a name any route matches; GET /v1/models lists them",
                status_code=404,
                code="model_not_found",
                param="model",
            )

        await self._guarded("/v1/models/{id}", scope, receive, send, work)
