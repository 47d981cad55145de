"""The default backend: an in-process LRU with a time to live and a size bound."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from turnout.plugins.cache.store import CacheStore

__all__ = ["MemoryStore"]


class MemoryStore(CacheStore):
    """At most ``max_entries`` entries; the least recently used go first.

    Expired entries are dropped when read, and evicted like any other when
    space is needed. Safe within one event loop (no awaits inside).
    """

    name = "memory"

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        entries = self._entries
        entries[key] = (self.clock() + ttl, value)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
