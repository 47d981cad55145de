"""What a cache backend is: bytes in, bytes out, with a time to live."""

from __future__ import annotations

import abc

__all__ = ["CacheStore", "CacheUnavailable"]


class CacheUnavailable(Exception):
    """The backend could not answer (Redis down, too slow): the caller treats
    it as a miss, or as not stored."""


class CacheStore(abc.ABC):
    """A key-value store of serialised responses.

    ``get`` and ``set`` raise ``CacheUnavailable`` when the backend fails;
    they never raise anything else for a backend problem.
    """

    name: str = "store"

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None (absent or expired)."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""
