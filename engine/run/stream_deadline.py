"""The route's total timeout over a stream's reads: one timer per stream.

A stream reads its upstream once per chunk; an ``asyncio.timeout`` per read
schedules and cancels a timer each time. ``StreamDeadline`` schedules one when
the stream starts: if it passes while the stream awaits its upstream, that read
is cancelled and raises ``TimeoutError``; if it passed in between (the caller
was slow to take a chunk, or the engine's clock says so), the next read raises
at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["StreamDeadline"]


class StreamDeadline:
    """``read`` a stream's next item within what ``remaining`` leaves.

    :param remaining: seconds left on the engine's clock, or None for no limit;
        read at the start, and before each read (a clock that jumps is seen).
    """

    __slots__ = ("_handle", "_reading", "_remaining", "expired")

    def __init__(self, remaining: Callable[[], float | None]) -> None:
        self._remaining = remaining
        self._reading: asyncio.Task[Any] | None = None
        self.expired = False
        left = remaining()
        self._handle = (
            None
            if left is None
            else asyncio.get_running_loop().call_later(max(left, 0), self._expire)
        )

    def _expire(self) -> None:
        self.expired = True
        if self._reading is not None:
            self._reading.cancel()

    async def read(self, items: AsyncIterator[Any]) -> Any:
        """The next item of ``items``; ``TimeoutError`` once the deadline passed.
        ``StopAsyncIteration`` at the end, as ``anext``."""
        if self._handle is None:
            return await anext(items)
        left = self._remaining()
        if self.expired or (left is not None and left <= 0):
            raise TimeoutError
        task = self._reading = asyncio.current_task()
        try:
            return await anext(items)
        except asyncio.CancelledError:
            if task is not None and self._cancelled_it(task):
                raise TimeoutError from None
            raise
        finally:
            self._reading = None

    def _cancelled_it(self, task: asyncio.Task[Any]) -> bool:
        """The deadline cancelled ``task``'s read, and nothing else asked to cancel it."""
        return self.expired and task.uncancel() == 0

    def cancel(self) -> None:
        """The stream ended: drop the timer."""
        if self._handle is not None:
            self._handle.cancel()
