"""Hot reload of the policy: on SIGHUP or when the file changes.

``Engine.reload`` compiles the new file completely and swaps it in
atomically; a file that does not compile raises ``PolicyError`` and the old
policy keeps serving. Requests already running finish on the snapshot they
started with. Every outcome is counted (``turnout_policy_reloads_total``)
and logged, with every problem of a rejected file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import time
from typing import Any

import structlog
from turnout import metrics
from turnout.engine import Engine
from turnout.errors import PolicyError, Problem

__all__ = ["PolicyReloader"]

log = structlog.get_logger("turnout.reload")


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyReloader:
    """Reloads ``engine``'s policy from ``path``.

    :param interval: seconds between checks of the file; None: no watching
        (SIGHUP and ``reload()`` still work).
    :param sighup: reload on SIGHUP (only possible in the main thread).
    """

    def __init__(
        self,
        engine: Engine,
        path: str | os.PathLike[str],
        *,
        interval: float | None = 1.0,
        sighup: bool = True,
    ) -> None:
        self.engine = engine
        self.path = os.fspath(path)
        self.interval = interval
        self.sighup = sighup
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._signature = _signature(self.path)
        self._signal_installed = False
        self._reloads = metrics.policy_reloads(engine.metrics)
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        """The last reloads, newest last: when, why, ``ok`` or ``rejected``, and the problems."""

    async def reload(self, reason: str) -> bool:
        """Compile the file and swap it in; False (old policy kept) if it is rejected."""
        async with self._lock:
            self._signature = _signature(self.path)
            try:
                if self._signature is not None and self._signature[1] == 0:
                    raise PolicyError([Problem("the policy file is empty", file=self.path)])
                table = await asyncio.to_thread(self.engine.reload, self.path)
            except PolicyError as exc:
                self._reloads.labels("rejected").inc()
                log.error(
                    "policy rejected; the previous policy keeps serving",
                    path=self.path,
                    reason=reason,
                    problems=[str(p) for p in exc.problems],
                )
                self._record(reason, "rejected", [str(p) for p in exc.problems])
                return False
            except OSError as exc:
                self._reloads.labels("rejected").inc()
                log.error(
                    "policy file unreadable; the previous policy keeps serving",
                    path=self.path,
                    reason=reason,
                    error=str(exc),
                )
                self._record(reason, "rejected", [str(exc)])
                return False
            self._reloads.labels("ok").inc()
            log.info("policy reloaded", path=self.path, reason=reason, routes=len(table.routes))
            self._record(reason, "ok", [])
            return True

    def _record(self, reason: str, result: str, problems: list[str]) -> None:
        self.history.append(
            {"at": time.time(), "reason": reason, "result": result, "problems": problems}
        )

    def start(self) -> None:
        """Start watching (call from the server's event loop)."""
        loop = asyncio.get_running_loop()
        if self.sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
                self._signal_installed = True
            except (ValueError, RuntimeError, AttributeError, NotImplementedError):
                log.info("SIGHUP reload unavailable here (not the main thread)")
        if self.interval is not None:
            self._task = loop.create_task(self._watch(self.interval), name="turnout-reload")

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload("SIGHUP"))

    async def _watch(self, interval: float) -> None:
        """Reload once a change has settled: the file looked the same on two checks
        in a row, so a file caught mid-write (truncated, half written) is never
        compiled."""
        pending = None
        while True:
            await asyncio.sleep(interval)
            current = _signature(self.path)
            if current is None or current == self._signature:
                pending = None
            elif current != pending:
                pending = current
            else:
                pending = None
                await self.reload("file changed")

    async def stop(self) -> None:
        if self._signal_installed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
