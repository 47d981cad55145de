"""Draining on SIGTERM / SIGINT, so load balancers stop sending traffic first.

From the first signal on, ``draining`` is True and ``GET /ready`` answers 503.
uvicorn, told to exit, stops accepting connections and closes idle keep-alive
ones at once, so nobody could ask ``/ready`` any more: with a ``delay`` the
gateway keeps serving everything (new connections too) for that many seconds
with ``/ready`` at 503, and only then passes the signal on to the server, whose
graceful shutdown (``drain_timeout``) starts there. A second signal passes it
on at once; a third SIGINT forces uvicorn out as usual.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

import structlog

__all__ = ["Drain"]

log = structlog.get_logger("turnout.http")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Drain:
    """Notices the shutdown signals in front of the server's own handlers.

    :param delay: seconds to keep serving after the first signal, ``/ready``
        answering 503, before the server starts its shutdown. 0: at once.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.draining = False
        self._passed_on = False
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Wrap the handlers the server installed (call from its event loop, once
        it has installed them: at lifespan startup). Only in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            log.info("draining on SIGTERM unavailable here (not the main thread)")
            return
        self._loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def stop(self) -> None:
        """Give the signals back to the server's handlers."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # runs between two bytecodes of the loop's thread: flags and a wake-up only
        first = not self.draining
        self.draining = True
        if first and self.delay > 0 and self._loop is not None:
            self._loop.call_soon_threadsafe(self._hold, sig)
        else:
            self._pass_on(sig, frame)

    def _hold(self, sig: int) -> None:
        log.info(
            "draining: /ready answers 503 until the shutdown starts",
            signal=signal.Signals(sig).name,
            delay_s=self.delay,
        )
        asyncio.get_running_loop().call_later(self.delay, self._delay_over, sig)

    def _delay_over(self, sig: int) -> None:
        if not self._passed_on:  # else a second signal cut the delay short
            self._pass_on(sig, None)

    def _pass_on(self, sig: int, frame: FrameType | None) -> None:
        self._passed_on = True
        handler = self._previous.get(sig)
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
