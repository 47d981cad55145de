"""The live dashboard, ``GET /ui`` (``gateway: {ui: true}``; off by default).

Server-rendered HTML (the page is complete without JavaScript), then a little
JavaScript follows ``GET /ui/events`` (Server-Sent Events: every finished
request as it happens, a snapshot of routes and budgets every two seconds)
and asks ``POST /ui/plan`` to explain a plan. Assets ship in the package.

With ``keys:`` on, every dashboard path needs a key with ``admin: true``:
``Authorization: Bearer`` / ``x-api-key``, or the form on the page, which sets
an HttpOnly, SameSite=Strict cookie scoped to ``/ui`` (a browser cannot put a
header on a page load or an EventSource).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import time
import urllib.parse
from importlib import resources
from typing import Any

from turnout.engine import Engine
from turnout.errors import TurnoutError
from turnout.http.asgi import Receive, Scope, Send
from turnout.http.reload import PolicyReloader
from turnout.http.ui.recent import RecentRequests
from turnout.http.wire import header_dict, json_bytes, read_body, send_error, send_json
from turnout.routing.planner import NoRouteError
from turnout.state import StateUnavailable
from turnout.state.base import breaker_view

__all__ = ["Dashboard"]

COOKIE = "turnout_ui"
_SNAPSHOT_EVERY = 2.0
_PLAN_BODY = 64 * 1024
_ASSETS = {
    "/ui/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/ui/style.css": ("style.css", b"text/css; charset=utf-8"),
}
_HTML = b"text/html; charset=utf-8"


def _asset(name: str) -> bytes:
    return resources.files("turnout.http.ui").joinpath(name).read_bytes()


def _cookie(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return urllib.parse.unquote(value)
    return None


def _forbidden() -> TurnoutError:
    return TurnoutError(
        "the dashboard needs a key with admin: true in the policy's keys",
        status_code=403,
        type="permission_error",
        code="not_admin",
    )


class Dashboard:
    """Handlers of ``/ui``, ``/ui/events``, ``/ui/plan``, ``/ui/state`` and the assets.

    :param engine: the engine whose routes, budgets and plans are shown.
    :param recent: the ring of finished requests (registered on the engine as an observer).
    :param reloader: whose reload history is shown; None when the gateway does not reload.
    """

    def __init__(
        self, engine: Engine, recent: RecentRequests, reloader: PolicyReloader | None
    ) -> None:
        self.engine = engine
        self.recent = recent
        self.reloader = reloader
        self._assets = {path: (_asset(name), kind) for path, (name, kind) in _ASSETS.items()}
        self._page = _asset("page.html").decode()

    @property
    def paths(self) -> dict[str, str]:
        """Path → method, for the gateway's route table."""
        return {
            "/ui": "GET",
            "/ui/events": "GET",
            "/ui/state": "GET",
            "/ui/plan": "POST",
            "/ui/login": "POST",
            **{path: "GET" for path in self._assets},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in self._assets:
            body, kind = self._assets[path]
            await _send(send, 200, body, kind, [(b"cache-control", b"max-age=300")])
            return
        headers = header_dict(scope)
        if path == "/ui/login":
            await self._login(headers, receive, send)
            return
        try:
            self._authorize(headers)
        except TurnoutError as exc:
            if path == "/ui":
                status = 401 if exc.status_code == 401 else 403
                await _send(send, status, self._login_page(exc.message).encode(), _HTML)
            else:
                await send_error(send, exc)
            return
        if path == "/ui":
            page = self._render(await self.snapshot())
            await _send(send, 200, page.encode(), _HTML, [(b"cache-control", b"no-store")])
        elif path == "/ui/state":
            await send_json(send, 200, json_bytes(await self.snapshot()))
        elif path == "/ui/plan":
            await self._plan(headers, receive, send)
        else:
            await self._events(receive, send)

    # -- access --------------------------------------------------------------

    def _authorize(self, headers: dict[str, str]) -> None:
        keys = self.engine.table.limits.keys if self.engine.table.limits else None
        if keys is None:
            return
        token = _cookie(headers)
        key = keys.authenticate({"authorization": f"Bearer {token}"} if token else headers)
        if not key.entry.admin:
            raise _forbidden()

    async def _login(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        body = await read_body(receive, headers, _PLAN_BODY)
        token = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0].strip()
        try:
            self._authorize({"authorization": f"Bearer {token}"})
        except TurnoutError as exc:
            await _send(send, exc.status_code, self._login_page(exc.message).encode(), _HTML)
            return
        cookie = f"{COOKIE}={urllib.parse.quote(token)}; Path=/ui; HttpOnly; SameSite=Strict"
        await _send(
            send, 303, b"", _HTML, [(b"location", b"/ui"), (b"set-cookie", cookie.encode())]
        )

    # -- what is shown -------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """Routes with their targets' live figures, budgets, reloads, recent requests."""
        engine = self.engine
        table = engine.table
        limits = table.limits
        names = sorted({t.name for r in table.routes for t in (*r.targets, *r.fallbacks)})
        breakers: dict[str, str] = {}
        budgets: list[dict[str, Any]] = []
        state_error = None
        try:
            if limits is not None and limits.breaker is not None and names:
                fields = await engine.ledger.backend.breakers(names)
                now = time.time()
                breakers = {
                    n: breaker_view(f, now, limits.breaker)
                    for n, f in zip(names, fields, strict=True)
                }
            if limits is not None:
                budgets = await engine.ledger.overview(limits, [r.name for r in table.routes])
        except StateUnavailable:
            state_error = "the state backend is unavailable"
        stats = engine.stats
        routes = []
        for route in table.routes:
            targets = []
            for role, group in (("target", route.targets), ("fallback", route.fallbacks)):
                for target in group:
                    latency = stats.latency(target.name)
                    targets.append(
                        {
                            "name": target.name,
                            "role": role,
                            "weight": target.weight if role == "target" else None,
                            "disabled": target.provider.disabled,
                            "latency_ms": None if latency is None else round(latency * 1000, 1),
                            "in_flight": stats.busy(target.name),
                            "breaker": breakers.get(target.name, "closed"),
                        }
                    )
            routes.append(
                {
                    "name": route.name,
                    "match": route.describe_match(),
                    "strategy": route.strategy_name,
                    "targets": targets,
                }
            )
        reloads = list(self.reloader.history) if self.reloader is not None else []
        return {
            "policy": table.file,
            "at": time.time(),
            "routes": routes,
            "budgets": budgets,
            "state_error": state_error,
            "reloads": reloads[::-1],
            "requests": list(self.recent),
        }

    async def _plan(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        """``{"model", "prompt"?, "max_tokens"?, "user"?, "fallbacks"?}`` → the plan explained."""
        body = await read_body(receive, headers, _PLAN_BODY)
        try:
            asked = json.loads(body or b"{}")
            if not isinstance(asked, dict) or not isinstance(asked.get("model"), str):
                raise ValueError
        except ValueError:
            await send_error(
                send,
                TurnoutError(
                    'send JSON like {"model": "smart", "max_tokens": 100}', code="bad_plan"
                ),
            )
            return
        request: dict[str, Any] = {
            "model": asked["model"],
            "messages": [{"role": "user", "content": str(asked.get("prompt") or "hi")}],
        }
        for field in ("max_tokens", "user", "fallbacks", "metadata"):
            if asked.get(field) not in (None, ""):
                request[field] = asked[field]
        try:
            plan = self.engine.plan(request)
        except (NoRouteError, TurnoutError) as exc:
            await send_json(send, 200, json_bytes({"error": exc.message}))
            return
        await send_json(send, 200, json_bytes({"explain": plan.explain(), "plan": plan.to_dict()}))

    async def _events(self, receive: Receive, send: Send) -> None:
        queue = self.recent.subscribe()
        if queue is None:
            await send_error(
                send,
                TurnoutError(
                    "too many dashboard pages follow this gateway; close one",
                    status_code=503,
                    type="api_error",
                    code="too_many_pages",
                ),
            )
            return
        gone = asyncio.get_running_loop().create_task(_disconnected(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await _event(send, "snapshot", await self.snapshot())
            next_snapshot = time.monotonic() + _SNAPSHOT_EVERY
            while not gone.done():
                wait = max(0.0, next_snapshot - time.monotonic())
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, gone}, timeout=wait)
                if getter in done:
                    await _event(send, "request", getter.result())
                else:
                    getter.cancel()
                if time.monotonic() >= next_snapshot and not gone.done():
                    await _event(send, "snapshot", await self.snapshot())
                    next_snapshot = time.monotonic() + _SNAPSHOT_EVERY
        except OSError:
            pass  # the page went away mid-write
        finally:
            self.recent.unsubscribe(queue)
            gone.cancel()

    # -- HTML ----------------------------------------------------------------

    def _render(self, snap: dict[str, Any]) -> str:
        e = html.escape
        route_rows = []
        for route in snap["routes"]:
            for i, t in enumerate(route["targets"]):
                head = (
                    f'<td rowspan="{len(route["targets"])}"><b>{e(route["name"])}</b>'
                    f'<div class="dim">{e(route["match"])} · {e(route["strategy"])}</div></td>'
                    if i == 0
                    else ""
                )
                route_rows.append(f'<tr data-target="{e(t["name"])}">{head}{_target_cells(t)}</tr>')
        budget_rows = [
            f"<tr><td>{e(b['name'])}</td><td>{e(str(b['match']))}</td><td>{e(b['unit'])}</td>"
            f'<td class="num">{b["limit"]:g}</td><td class="num">{b["spent"]:g}</td>'
            f'<td class="num">{b["reserved"]:g}</td><td class="num">{b["remaining"]:g}</td>'
            f'<td class="num">{b["resets_in"]}s</td></tr>'
            for b in snap["budgets"]
        ] or ['<tr><td colspan="8" class="dim">no budgets or rate limits in this policy</td></tr>']
        reload_rows = [
            f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(r['at']))}</td>"
            f'<td class="{e(r["result"])}">{e(r["result"])}</td><td>{e(r["reason"])}</td>'
            f"<td>{'<br>'.join(e(p) for p in r['problems'])}</td></tr>"
            for r in snap["reloads"]
        ] or ['<tr><td colspan="4" class="dim">no reload since start</td></tr>']
        data = json.dumps(snap["requests"]).replace("</", "<\\/")
        return (
            self._page.replace("{{policy}}", e(str(snap["policy"] or "(in memory)")))
            .replace("{{policy_name}}", e(os.path.basename(snap["policy"] or "(in memory)")))
            .replace("{{routes}}", "\n".join(route_rows))
            .replace("{{budgets}}", "\n".join(budget_rows))
            .replace("{{reloads}}", "\n".join(reload_rows))
            .replace("{{requests_json}}", data)
            .replace("{{state_error}}", e(snap["state_error"] or ""))
        )

    def _login_page(self, message: str) -> str:
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>turnout</title>'
            '<link rel="stylesheet" href="/ui/style.css"></head><body><main class="login">'
            "<h1>turnout</h1>"
            f'<p class="error">{html.escape(message)}</p>'
            '<form method="post" action="/ui/login"><label>Admin key '
            '<input type="password" name="key" autocomplete="current-password" autofocus>'
            '</label><button type="submit">Open the dashboard</button></form></main></body></html>'
        )


def _target_cells(t: dict[str, Any]) -> str:
    e = html.escape
    disabled = f' <span class="dim">({e(t["disabled"])})</span>' if t["disabled"] else ""
    weight = "" if t["weight"] is None else f" · {t['weight']:g}"
    latency = "-" if t["latency_ms"] is None else t["latency_ms"]
    breaker = e(t["breaker"])
    return (
        f"<td>{e(t['name'])}{disabled}</td><td>{e(t['role'])}{weight}</td>"
        f'<td class="num latency">{latency}</td><td class="num inflight">{t["in_flight"]}</td>'
        f'<td class="breaker {breaker}">{breaker}</td>'
    )


async def _send(
    send: Send,
    status: int,
    body: bytes,
    kind: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _event(send: Send, name: str, data: Any) -> None:
    payload = b"event: " + name.encode() + b"\ndata: " + json_bytes(data) + b"\n\n"
    await send({"type": "http.response.body", "body": payload, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
