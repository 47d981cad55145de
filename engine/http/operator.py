"""The gateway's operator endpoints: ``/v1/models``, ``/v1/budgets``,
``/metrics``, ``/health``, ``/ready`` and ``/openapi.json``.

With ``keys:`` on they say nothing of other tenants to a caller without a key:
``/v1/models`` and ``/v1/budgets`` need one and show what it may use,
``/metrics`` needs an ``admin: true`` key unless ``gateway.public_metrics``,
``/ready`` says only its status. ``Gateway`` routes to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from turnout import metrics
from turnout.engine import Engine
from turnout.errors import TurnoutError
from turnout.http.asgi import Receive, Scope, Send
from turnout.http.drain import Drain
from turnout.http.models import model_list
from turnout.http.openapi import openapi_json
from turnout.http.wire import header_dict, json_bytes, send_error, send_json
from turnout.policy.limits import ApiKeyInfo
from turnout.state import StateUnavailable

__all__ = ["OperatorEndpoints"]


class OperatorEndpoints:
    """The handlers, over the gateway's engine.

    :param engine: a callable returning the engine (the gateway's).
    :param drain: notices SIGTERM / SIGINT, after which ``/ready`` answers 503;
        None: ``/ready`` never reports draining.
    :param count: counts one answer by endpoint and status (``/metrics``).
    """

    def __init__(
        self,
        engine: Callable[[], Engine],
        drain: Drain | None,
        count: Callable[[str, int], None],
    ) -> None:
        self._engine = engine
        self.drain = drain
        self._count = count

    def _caller(self, scope: Scope, *, admin: bool = False) -> ApiKeyInfo | None:
        """With ``keys:`` on, the caller's key (TurnoutError 401; 403 for a key
        without ``admin: true`` where ``admin`` is asked); None without keys."""
        limits = self._engine().table.limits
        if limits is None or limits.keys is None:
            return None
        key = limits.keys.authenticate(header_dict(scope))
        if admin and not key.entry.admin:
            raise TurnoutError(
                "this endpoint needs a key with admin: true in the policy's keys",
                status_code=403,
                type="permission_error",
                code="not_admin",
            )
        return key

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every route alias and provider model; with ``keys:`` on, what the
        caller's key may use (a key is required)."""
        try:
            key = self._caller(scope)
        except TurnoutError as exc:
            await send_error(send, exc)
            self._count("/v1/models", exc.status_code)
            return
        await send_json(send, 200, model_list(self._engine().table, key))
        self._count("/v1/models", 200)

    async def budgets(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Spend, remaining and reset of each budget and rate limit (``keys:`` on:
        the caller's key is required, and it sees the shared ones and its own)."""
        engine = self._engine()
        table = engine.table
        limits = table.limits
        rows: list[dict[str, Any]] = []
        try:
            key = self._caller(scope)
            if limits is not None:
                routes = [r.name for r in table.routes]
                rows = await engine.ledger.overview(limits, routes, key)
        except TurnoutError as exc:
            await send_error(send, exc)
            return
        except StateUnavailable:
            error = TurnoutError(
                "budgets cannot be read: the state backend is unavailable",
                status_code=503,
                type="api_error",
                code="state_unavailable",
            )
            await send_error(send, error)
            return
        await send_json(send, 200, json_bytes({"object": "list", "data": rows}))

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Prometheus metrics; with ``keys:`` on, for ``admin: true`` keys only
        unless ``gateway.public_metrics`` (series name budgets and keys)."""
        if not self._engine().table.policy.gateway.public_metrics:
            try:
                self._caller(scope, admin=True)
            except TurnoutError as exc:
                await send_error(send, exc)
                return
        body = metrics.exposition(self._engine().metrics)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", metrics.CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, openapi_json())

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, b'{"status":"ok"}')

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 while the gateway wants traffic; 503 when no provider is enabled or
        it is shutting down (``/health`` stays 200 meanwhile: it is alive)."""
        table = self._engine().table
        enabled = sorted(name for name, p in table.providers.items() if not p.disabled)
        body: dict[str, Any] = {"policy": table.file, "providers_enabled": enabled}
        if table.limits is not None and table.limits.keys is not None:
            body = {}  # unauthenticated: say ready or not, not where the policy lives
        if self.drain is not None and self.drain.draining:
            reason = "shutting down: finishing the requests in flight"
            await send_json(send, 503, json_bytes({"status": "draining", "reason": reason, **body}))
        elif enabled:
            await send_json(send, 200, json_bytes({"status": "ready", **body}))
        else:
            reason = "no provider is enabled (are their API keys set?)"
            await send_json(
                send, 503, json_bytes({"status": "not_ready", "reason": reason, **body})
            )
