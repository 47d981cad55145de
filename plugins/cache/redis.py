"""The shared backend: Redis (``redis>=5`` asyncio client), one server for every replica.

Entries are plain strings with a PX expiry, so Redis itself evicts them.
Every command has a short timeout; any failure raises ``CacheUnavailable``,
which the cache plugin serves as a miss (and counts), so an outage slows
nothing down and fails no request.

redis-py's asyncio clients belong to the event loop that created them, so
this keeps one client per running loop (the gateway has one; tests and
``Engine.chat_sync`` may have others).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from turnout.plugins.cache.store import CacheStore, CacheUnavailable

__all__ = ["RedisStore"]


class RedisStore(CacheStore):
    name = "redis"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        for key, (old, _) in list(self._clients.items()):
            if old.is_closed():
                del self._clients[key]
        client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry_on_timeout=False,
        )
        self._clients[id(loop)] = (loop, client)
        return client

    async def get(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self.timeout):
                value = await self._client().get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise CacheUnavailable(f"redis get failed: {type(exc).__name__}: {exc}") from exc
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._client().set(key, value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError, TimeoutError) as exc:
            raise CacheUnavailable(f"redis set failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the current loop's client (others are closed with their loop)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.pop(id(loop), None)
        if entry is not None:
            await entry[1].aclose()
