"""The pooled upstream HTTP clients the engine hands to providers.

One client per provider instance, so a slow upstream can only exhaust its own
connection pool; kept across reloads while the instance's connection settings
are unchanged. Clients belong to an event loop, so the pool is per loop.

What sends the bytes is chosen by measurement (benchmarks/RESULTS.md,
"Upstream client: our own HTTP/1.1 client vs aiohttp (issue 18)"): by default
``ClientPool.upstream`` is turnout's own HTTP/1.1 client,
``turnout.upstream.h1_upstream.H1Upstream``, with no httpx2 object on its path
(URLs an environment proxy applies to take the httpx2 path, which honours it).
``TURNOUT_UPSTREAM_TRANSPORT`` opts out: ``aiohttp`` sends through an httpx2
client over ``turnout.upstream.transport.AiohttpTransport`` (the previous
default), ``httpx2`` through httpx2's own transport. An injected transport
(tests' ``httpx2.MockTransport``) always takes the httpx2 client path.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Literal

import httpx2 as httpx
from turnout.policy.table import CompiledProvider
from turnout.upstream.h1_upstream import H1Upstream
from turnout.upstream.interface import HttpxUpstream, Upstream
from turnout.upstream.transport import AiohttpTransport, Reply

__all__ = ["TRANSPORT_ENV", "ClientPool", "PooledClient", "Reply", "TransportName", "post_bytes"]

_MAX_KEEPALIVE = 20

TransportName = Literal["h1", "aiohttp", "httpx2"]
TRANSPORT_ENV = "TURNOUT_UPSTREAM_TRANSPORT"
_TRANSPORTS = ("h1", "aiohttp", "httpx2")


def _transport_from_env() -> TransportName:
    name = os.environ.get(TRANSPORT_ENV, "").strip().lower() or "h1"
    if name == "h1":
        return "h1"
    if name == "aiohttp":
        return "aiohttp"
    if name == "httpx2":
        return "httpx2"
    raise ValueError(f"{TRANSPORT_ENV}={name!r}: expected one of {', '.join(_TRANSPORTS)}")


def _pool_key(provider: CompiledProvider) -> tuple[object, ...]:
    c = provider.config
    return (provider.name, c.timeout.connect, c.timeout.read, c.max_connections)


class PooledClient(httpx.AsyncClient):
    """``httpx2.AsyncClient`` that parses each distinct URL and header set once.

    Providers post to the same few absolute URLs with the same few header
    dicts on every call; httpx2 parses and merges them anew each time
    (~10 µs each, benchmarks/RESULTS.md). ``httpx2.URL`` is immutable and
    ``httpx2.Request`` copies the merged headers, so both are reused. Relative
    URLs (merged with ``base_url``), ``URL`` objects and headers that are not
    a plain dict take httpx2's own path.
    """

    _MAX_CACHED = 256

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._urls: dict[str, httpx.URL] = {}
        self._merged_headers: dict[tuple[object, ...], Any] = {}
        self._header_items: dict[tuple[object, ...], list[tuple[str, str]]] = {}
        self._aiohttp = transport if isinstance(transport, AiohttpTransport) else None

    async def post_bytes(
        self, url: str, *, content: bytes, headers: dict[str, str], timeout: Any
    ) -> Reply:
        """POST and read the whole answer. Over the aiohttp transport this skips
        httpx2's request and response objects; the bytes sent (the client's
        headers merged with ``headers``), the timeouts and the exceptions
        raised are those of ``self.post``."""
        transport = self._aiohttp
        hooks = self._event_hooks
        if transport is None or self._mounts or any(hooks.values()) or self.auth is not None:
            return _reply(await self.post(url, content=content, headers=headers, timeout=timeout))
        key = (url, *self.headers.raw, *headers.items())
        items = self._header_items.get(key)
        if items is None:
            if len(self._header_items) >= self._MAX_CACHED:
                self._header_items.clear()
            merged = self._merge_headers(headers)
            request = httpx.Request("POST", url, headers=merged, content=content)
            # what httpx2 would send but the body's length, which aiohttp sets
            items = self._header_items[key] = [
                (name, value)
                for name, value in request.headers.multi_items()
                if name != "content-length"
            ]
        if timeout is httpx.USE_CLIENT_DEFAULT:
            timeout = self.timeout
        return await transport.post(url, content, items, timeout.as_dict())

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if type(url) is not str:
            return super()._merge_url(url)
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if parsed.is_relative_url:
                return super()._merge_url(parsed)
            if len(self._urls) >= self._MAX_CACHED:
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    def _merge_headers(self, headers: Any = None) -> Any:
        if type(headers) is not dict:
            return super()._merge_headers(headers)
        # the client's own headers are part of the key: they may be changed in place
        key = (*self.headers.raw, *headers.items())
        merged = self._merged_headers.get(key)
        if merged is None:
            merged = super()._merge_headers(headers)
            if len(self._merged_headers) >= self._MAX_CACHED:
                self._merged_headers.clear()
            self._merged_headers[key] = merged
        return merged


def _reply(response: httpx.Response) -> Reply:
    return Reply(response.status_code, response.headers, response.content, response.reason_phrase)


async def post_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout: Any = httpx.USE_CLIENT_DEFAULT,
) -> Reply:
    """POST ``content`` with ``client`` and read the whole answer: the pooled
    clients' fast path, or ``client.post`` for any other client."""
    if isinstance(client, PooledClient):
        return await client.post_bytes(url, content=content, headers=headers, timeout=timeout)
    return _reply(await client.post(url, content=content, headers=headers, timeout=timeout))


class ClientPool:
    """Lazily built upstream clients: per provider instance, an ``Upstream``
    (``upstream``) and the ``httpx2.AsyncClient`` under the httpx2 path (``client``).

    :param transport: one transport for every client, replacing the network
        (tests pass ``httpx2.MockTransport``); ``upstream`` then sends over it.
    :param backend: without ``transport``, what sends the bytes: ``"h1"``
        (default, ``H1Upstream``), ``"aiohttp"`` or ``"httpx2"`` (an httpx2
        client over that transport); None reads ``TURNOUT_UPSTREAM_TRANSPORT``.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        backend: TransportName | None = None,
    ) -> None:
        self._transport = transport
        self.backend: TransportName = backend or _transport_from_env()
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[object, ...], PooledClient]
        ] = weakref.WeakKeyDictionary()
        self._upstreams_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[object, ...], Upstream]
        ] = weakref.WeakKeyDictionary()

    def upstream(self, provider: CompiledProvider) -> Upstream:
        """What ``provider``'s calls send through, on the running loop."""
        loop = asyncio.get_running_loop()
        upstreams = self._upstreams_by_loop.get(loop)
        if upstreams is None:
            upstreams = self._upstreams_by_loop[loop] = {}
        key = _pool_key(provider)
        upstream = upstreams.get(key)
        if upstream is None:
            if self._transport is None and self.backend == "h1":
                c = provider.config
                upstream = H1Upstream(
                    connect_timeout=c.timeout.connect,
                    read_timeout=c.timeout.read,
                    max_connections=c.max_connections,
                    fallback=lambda: HttpxUpstream(self.client(provider)),
                )
            else:
                upstream = HttpxUpstream(self.client(provider))
            upstreams[key] = upstream
        return upstream

    def client(self, provider: CompiledProvider) -> PooledClient:
        loop = asyncio.get_running_loop()
        clients = self._by_loop.get(loop)
        if clients is None:
            clients = self._by_loop[loop] = {}
        key = _pool_key(provider)
        client = clients.get(key)
        if client is None:
            client = clients[key] = self._build(provider)
        return client

    def _build(self, provider: CompiledProvider) -> PooledClient:
        c = provider.config
        limits = httpx.Limits(
            max_connections=c.max_connections,
            # httpx2 checks every idle connection on each request: keep few
            max_keepalive_connections=min(c.max_connections, _MAX_KEEPALIVE),
        )
        transport = self._transport
        if transport is None and self.backend == "aiohttp":
            transport = AiohttpTransport(limits=limits)
        return PooledClient(
            transport=transport,
            timeout=httpx.Timeout(c.timeout.read, connect=c.timeout.connect),
            limits=limits,
            follow_redirects=False,
            # API clients shared by every caller: no cookie is kept or sent
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )

    async def aclose(self) -> None:
        """Close the clients of the running loop (others die with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for upstream in self._upstreams_by_loop.pop(loop, {}).values():
            if isinstance(upstream, H1Upstream):
                await upstream.aclose()
        clients = self._by_loop.pop(loop, {})
        for client in clients.values():
            await client.aclose()
