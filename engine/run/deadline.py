"""Time limits for requests without a timer per request.

A request waits under several limits in turn: the gateway's body timeout, then
the route's total timeout around each upstream call (retries and fallbacks
share it). ``asyncio.timeout()`` per phase makes a timeout object and arms and
cancels a loop timer each time, and a loop timer is dear (uvloop: a libuv
handle each). A ``Deadline`` is one small object per request; the phases in
force on a loop share one loop timer, armed at the earliest of their limits
(``_Timers``): starting a phase with a limit later than that timer's, which is
what almost every request does, touches no timer at all. When the timer fires
it cuts the phases whose limit has passed and re-arms at the earliest left.

Semantics are ``asyncio.timeout``'s: when the limit of the phase in force
passes, the request's task is cancelled, and ``end(exc)`` says whether the
``CancelledError`` is the deadline's own (nothing else asked to cancel the
task), to be raised as ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["Deadline"]

T = TypeVar("T")


class _Timers:
    """One loop's phases in force and the one loop timer that bounds them."""

    __slots__ = ("active", "armed", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.active: set[Deadline] = set()
        self.handle: asyncio.TimerHandle | None = None
        self.armed = math.inf
        """The loop time ``handle`` fires at (inf: none armed)."""

    def add(self, deadline: Deadline, when: float) -> None:
        self.active.add(deadline)
        if when < self.armed:
            if self.handle is not None:
                self.handle.cancel()
            self.armed = when
            self.handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        due_by = max(self.armed, self.loop.time())
        self.handle, self.armed = None, math.inf
        active = self.active
        due = [deadline for deadline in active if (deadline._when or 0.0) <= due_by]
        for deadline in due:
            active.discard(deadline)
            deadline._expire()
        if active:
            when = min(deadline._when or 0.0 for deadline in active)
            self.armed = when
            self.handle = self.loop.call_at(when, self._fire)


_TIMERS: dict[asyncio.AbstractEventLoop, _Timers] = {}


def _timers_of(loop: asyncio.AbstractEventLoop) -> _Timers:
    timers = _TIMERS.get(loop)
    if timers is None:
        for closed in [known for known in _TIMERS if known.is_closed()]:
            del _TIMERS[closed]
        timers = _TIMERS[loop] = _Timers(loop)
    return timers


class Deadline:
    """The time limits of one request, in the task that runs it."""

    __slots__ = ("_cancelling", "_expired", "_task", "_timers", "_when")

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._timers: _Timers | None = None
        self._when: float | None = None
        """The limit in force (loop time), or None between phases."""
        self._expired = False
        self._cancelling = 0

    def start(self, seconds: float) -> None:
        """A phase that must end within ``seconds`` begins, in the current task."""
        task = asyncio.current_task()
        assert task is not None
        timers = self._timers
        if task is not self._task or timers is None:  # the first phase (or another task)
            self.end()
            timers = _timers_of(task.get_loop())
            self._task, self._timers = task, timers
        when = timers.loop.time() + seconds
        self._when = when
        self._expired = False
        self._cancelling = task.cancelling()
        timers.add(self, when)

    def _expire(self) -> None:
        self._when = None
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    def end(self, error: BaseException | None = None) -> bool:
        """The phase is over; True when ``error`` is the deadline's own
        cancellation (raise ``TimeoutError`` then). Safe to call twice."""
        if self._when is not None:
            self._when = None
            assert self._timers is not None
            self._timers.active.discard(self)
        if not self._expired:
            return False
        self._expired = False
        assert self._task is not None
        ours = self._task.uncancel() <= self._cancelling
        return ours and isinstance(error, asyncio.CancelledError)

    async def within(self, seconds: float | None, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` as a phase that must end within ``seconds`` (None:
        no limit); ``TimeoutError`` when the limit passes first."""
        if seconds is None:
            return await awaitable
        self.start(max(seconds, 0))
        try:
            return await awaitable
        except asyncio.CancelledError as exc:
            if self.end(exc):
                raise TimeoutError from None
            raise
        finally:
            self.end()

    def close(self) -> None:
        """The request is over: no phase of it is left in force."""
        if self._when is not None:
            self.end()
