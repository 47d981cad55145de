"""SQLite state: spend survives a restart; the embedded default for one machine.

The standard library's ``sqlite3`` on one connection owned by one worker
thread (what aiosqlite does, without the dependency). Every operation is one
``BEGIN IMMEDIATE`` transaction: it takes the database's write lock before
reading, so the check and the update of a reservation cannot interleave with
another task, thread or process (``--workers N`` on one file). WAL mode lets
readers run alongside; ``busy_timeout`` makes writers queue instead of failing.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from turnout.state.base import (
    BREAKER_IDLE,
    BreakerEvent,
    BreakerRule,
    BreakerState,
    Counter,
    Hold,
    Release,
    StateBackend,
    StateUnavailable,
    transition,
)

__all__ = ["SQLiteState"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    used INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS breakers (target TEXT PRIMARY KEY, fields TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL
);
"""
_PURGE_EVERY = 1024


class SQLiteState(StateBackend):
    name = "sqlite"
    shared = True

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 5.0, wall: Callable[[], float] = time.time
    ) -> None:
        self.path = str(path)
        self._breaker_ops = 0
        self.wall = wall
        self._busy_ms = int(busy_timeout * 1000)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="turnout-sqlite")
        self._db: sqlite3.Connection | None = None
        self._ops = 0

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        def job() -> T:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, job)
        except sqlite3.Error as exc:
            raise StateUnavailable(f"sqlite {self.path}: {exc}") from exc

    async def reserve(self, holds: Sequence[Hold]) -> int:
        def job(db: sqlite3.Connection) -> int:
            for i, hold in enumerate(holds):
                row = db.execute(
                    "SELECT used + held FROM counters WHERE key = ?", (hold.key,)
                ).fetchone()
                if (row[0] if row else 0) + hold.amount > hold.limit:
                    return i
            db.executemany(
                "INSERT INTO counters (key, held, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET held = held + excluded.held, "
                "expires = max(expires, excluded.expires)",
                [(h.key, h.amount, h.expires) for h in holds],
            )
            self._ops += 1
            if self._ops % _PURGE_EVERY == 0:
                db.execute("DELETE FROM counters WHERE expires < ? AND held = 0", (self.wall(),))
            return -1

        return await self._run(job)

    async def release(self, releases: Sequence[Release]) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO counters (key, used, held, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET used = used + excluded.used, "
                "held = held + excluded.held",
                [(r.key, r.used, -r.held, r.expires) for r in releases],
            )

        await self._run(job)

    async def read(self, keys: Sequence[str]) -> list[Counter]:
        def job(db: sqlite3.Connection) -> list[Counter]:
            out = []
            for key in keys:
                row = db.execute("SELECT used, held FROM counters WHERE key = ?", (key,)).fetchone()
                out.append(Counter(int(row[0]), int(row[1])) if row else Counter())
            return out

        return await self._run(job, write=False)

    async def breaker(
        self, target: str, event: BreakerEvent, now: float, rule: BreakerRule
    ) -> BreakerState:
        def job(db: sqlite3.Connection) -> BreakerState:
            row = db.execute("SELECT fields FROM breakers WHERE target = ?", (target,)).fetchone()
            fields, state = transition(json.loads(row[0]) if row else {}, event, now, rule)
            fields["touched"] = now  # forgotten BREAKER_IDLE after it
            db.execute(
                "INSERT INTO breakers (target, fields) VALUES (?, ?) "
                "ON CONFLICT (target) DO UPDATE SET fields = excluded.fields",
                (target, json.dumps(fields)),
            )
            self._breaker_ops += 1
            if self._breaker_ops % _PURGE_EVERY == 0:
                db.execute(
                    "DELETE FROM breakers WHERE json_extract(fields, '$.touched') < ?",
                    (now - BREAKER_IDLE,),
                )
            return state

        return await self._run(job)

    async def breakers(self, targets: Sequence[str]) -> list[dict[str, Any]]:
        def job(db: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for target in targets:
                row = db.execute(
                    "SELECT fields FROM breakers WHERE target = ?", (target,)
                ).fetchone()
                out.append(json.loads(row[0]) if row else {})
            return out

        return await self._run(job, write=False)

    async def put_document(self, key: str, value: str, expires: float) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO documents (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires = excluded.expires",
                (key, value, expires),
            )
            self._ops += 1
            if self._ops % _PURGE_EVERY == 0:
                db.execute("DELETE FROM documents WHERE expires < ?", (self.wall(),))

        await self._run(job)

    async def get_document(self, key: str) -> str | None:
        def job(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT value FROM documents WHERE key = ? AND expires > ?", (key, self.wall())
            ).fetchone()
            return str(row[0]) if row else None

        return await self._run(job, write=False)

    async def delete_document(self, key: str) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM documents WHERE key = ? AND expires > ?", (key, self.wall())
            )
            db.execute("DELETE FROM documents WHERE key = ?", (key,))
            return cursor.rowcount > 0

        return await self._run(job)

    async def clear(self) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM counters")
            db.execute("DELETE FROM breakers")
            db.execute("DELETE FROM documents")

        await self._run(job)

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=False)
