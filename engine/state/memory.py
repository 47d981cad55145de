"""In-memory state: the default. Exact within one process, gone on restart.

Each operation runs without awaiting, so it is atomic on the event loop; a
lock makes it so across threads too (``Engine.chat_sync`` runs its own loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from turnout.state.base import (
    BREAKER_LIMIT,
    BreakerEvent,
    BreakerRule,
    BreakerState,
    Counter,
    Hold,
    Release,
    StateBackend,
    transition,
)

__all__ = ["MemoryState"]

_PURGE_EVERY = 1024


class MemoryState(StateBackend):
    name = "memory"

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.counters: dict[str, list[float]] = {}  # key -> [used, held, expires]
        self.breaker_fields: dict[str, dict[str, Any]] = {}  # least recently used first
        self.breaker_limit = BREAKER_LIMIT
        self.documents: dict[str, tuple[str, float]] = {}  # key -> (value, expires)
        self._lock = threading.Lock()
        self._ops = 0

    async def reserve(self, holds: Sequence[Hold]) -> int:
        with self._lock:
            counters = self.counters
            for i, hold in enumerate(holds):
                entry = counters.get(hold.key)
                if entry is not None and entry[0] + entry[1] + hold.amount > hold.limit:
                    return i
                if entry is None and hold.amount > hold.limit:
                    return i
            for hold in holds:
                entry = counters.get(hold.key)
                if entry is None:
                    counters[hold.key] = [0, hold.amount, hold.expires]
                else:
                    entry[1] += hold.amount
                    entry[2] = max(entry[2], hold.expires)
            self._ops += 1
            if self._ops % _PURGE_EVERY == 0:
                self._purge()
            return -1

    async def release(self, releases: Sequence[Release]) -> None:
        with self._lock:
            for r in releases:
                entry = self.counters.setdefault(r.key, [0, 0, r.expires])
                entry[0] += r.used
                entry[1] -= r.held

    async def read(self, keys: Sequence[str]) -> list[Counter]:
        out = []
        for key in keys:
            entry = self.counters.get(key)
            out.append(Counter(int(entry[0]), int(entry[1])) if entry else Counter())
        return out

    async def breaker(
        self, target: str, event: BreakerEvent, now: float, rule: BreakerRule
    ) -> BreakerState:
        with self._lock:
            breakers = self.breaker_fields
            fields, state = transition(breakers.pop(target, {}), event, now, rule)
            breakers[target] = fields  # most recently used last
            if len(breakers) > self.breaker_limit:
                del breakers[next(iter(breakers))]
            return state

    async def breakers(self, targets: Sequence[str]) -> list[dict[str, Any]]:
        return [self.breaker_fields.get(t, {}) for t in targets]

    async def put_document(self, key: str, value: str, expires: float) -> None:
        with self._lock:
            self.documents[key] = (value, expires)
            self._ops += 1
            if self._ops % _PURGE_EVERY == 0:
                self._purge()

    async def get_document(self, key: str) -> str | None:
        entry = self.documents.get(key)
        return entry[0] if entry is not None and entry[1] > self.wall() else None

    async def delete_document(self, key: str) -> bool:
        with self._lock:
            entry = self.documents.pop(key, None)
        return entry is not None and entry[1] > self.wall()

    async def clear(self) -> None:
        with self._lock:
            self.counters.clear()
            self.breaker_fields.clear()
            self.documents.clear()

    def _purge(self) -> None:
        now = self.wall()
        dead = [k for k, v in self.counters.items() if v[2] < now and not v[1]]
        for key in dead:
            del self.counters[key]
        for key in [k for k, (_, expires) in self.documents.items() if expires < now]:
            del self.documents[key]
