"""The floor: a raw ASGI app that forwards the body to the upstream with aiohttp.

    FLOOR_UPSTREAMS="fast=http://127.0.0.1:9100,slow=http://127.0.0.1:9101" \
        uvicorn floor:app --app-dir benchmarks/peers --loop uvloop --http httptools

`POST /<name>/v1/chat/completions` goes to upstream `<name>` unchanged: no JSON
parsing, no validation, no logging. That is the least a Python gateway on
uvicorn can do per request, so it is the practical limit on this machine.
Server-Sent Events are passed on chunk by chunk as they arrive.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAMS = dict(
    item.split("=", 1) for item in os.environ.get("FLOOR_UPSTREAMS", "").split(",") if item
)
_session: aiohttp.ClientSession | None = None


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                _session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    name, _, rest = scope["path"].lstrip("/").partition("/")
    base = UPSTREAMS.get(name)
    if base is None or _session is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"unknown upstream"})
        return
    body = await _read_body(receive)
    headers = {"content-type": "application/json", "authorization": "Bearer floor"}
    async with _session.post(f"{base}/{rest}", data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("content-type", "application/json").encode()
        if content_type.startswith(b"text/event-stream"):
            await send({"type": "http.response.start", "status": upstream.status,
                        "headers": [(b"content-type", content_type)]})  # fmt: skip
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        payload = await upstream.read()
    await send({"type": "http.response.start", "status": upstream.status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(payload)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})
