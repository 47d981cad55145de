"""The pooled upstream HTTP clients the engine hands to providers.

One client per provider instance, so a slow upstream can only exhaust its own
connection pool; kept across reloads while the instance's connection settings
are unchanged. Clients belong to an event loop, so the pool is per loop.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx2 as httpx

from .compile import CompiledProvider

__all__ = ["ClientPool"]

_MAX_KEEPALIVE = 20


def _pool_key(provider: CompiledProvider) -> tuple[object, ...]:
    c = provider.config
    return (provider.name, c.timeout.connect, c.timeout.read, c.max_connections)


class ClientPool:
    """Lazily built ``httpx2.AsyncClient``s; ``transport`` replaces the network (tests)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[object, ...], httpx.AsyncClient]
        ] = weakref.WeakKeyDictionary()

    def client(self, provider: CompiledProvider) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        clients = self._by_loop.get(loop)
        if clients is None:
            clients = self._by_loop[loop] = {}
        key = _pool_key(provider)
        client = clients.get(key)
        if client is None:
            client = clients[key] = self._build(provider)
        return client

    def _build(self, provider: CompiledProvider) -> httpx.AsyncClient:
        c = provider.config
        return httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(c.timeout.read, connect=c.timeout.connect),
            limits=httpx.Limits(
                max_connections=c.max_connections,
                # httpx2 checks every idle connection on each request: keep few
                max_keepalive_connections=min(c.max_connections, _MAX_KEEPALIVE),
            ),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the clients of the running loop (others die with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        clients = self._by_loop.pop(loop, {})
        for client in clients.values():
            await client.aclose()
