"""One timer per request for every time limit it runs under.

A request waits under several limits in turn: the gateway's body timeout, then
the route's total timeout around each upstream call (retries and fallbacks
share it), or the first-token timeout of a stream. ``asyncio.timeout()`` per
phase makes a timeout object and a loop timer each time; a ``Deadline`` is one
object per request whose loop timer is armed once and kept while the next
limit is no earlier than it (a timer that fires before the limit in force
re-arms itself at that limit, a timer with no limit in force does nothing), so
a request that ends well arms one timer and cancels it once.

Its semantics are ``asyncio.timeout``'s: when the limit of the phase in force
passes, the request's task is cancelled, and ``end(exc)`` says whether the
``CancelledError`` is the deadline's own (nothing else asked to cancel the
task), to be raised as ``TimeoutError``.
"""

from __future__ import annotations

import asyncio

__all__ = ["Deadline"]


class Deadline:
    """The time limits of one request, in the task that runs it."""

    __slots__ = ("_armed", "_cancelling", "_expired", "_handle", "_loop", "_task", "_when")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed = 0.0
        """The loop time ``_handle`` fires at."""
        self._when: float | None = None
        """The limit in force (loop time), or None between phases."""
        self._expired = False
        self._cancelling = 0

    def start(self, seconds: float) -> None:
        """A phase that must end within ``seconds`` begins (in the current task)."""
        task = asyncio.current_task()
        assert task is not None
        loop = self._loop
        handle = self._handle
        if task is not self._task:  # the first phase, or a stream read from another task
            if handle is not None:
                handle.cancel()
                handle = None
            loop = self._loop = task.get_loop()
            self._task = task
        assert loop is not None
        when = loop.time() + seconds
        self._when = when
        self._expired = False
        self._cancelling = task.cancelling()
        if handle is None or self._armed > when:
            if handle is not None:
                handle.cancel()
            self._armed = when
            self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        when = self._when
        if when is None:
            return  # between phases: the next one arms its own limit
        if self._armed < when:  # armed for an earlier limit than the one in force
            assert self._loop is not None
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)
            return
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    def end(self, error: BaseException | None = None) -> bool:
        """The phase is over; True when ``error`` is the deadline's own
        cancellation (raise ``TimeoutError`` then). Safe to call twice."""
        self._when = None
        if not self._expired:
            return False
        self._expired = False
        assert self._task is not None
        ours = self._task.uncancel() <= self._cancelling
        return ours and isinstance(error, asyncio.CancelledError)

    def close(self) -> None:
        """The request is over: no timer is left behind."""
        self._when = None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
