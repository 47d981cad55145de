"""Live figures per target that routing strategies read: in-flight counts and a
peak-EWMA of latency (time to first token for streams).

Updated by the executor around every upstream attempt; read by the planner
through ``StateSnapshot.stats``. In-memory, per process: figures shared across
replicas come with the shared state backends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["TargetStats"]


class TargetStats:
    """Peak-EWMA latency and in-flight count per ``provider/model``.

    Peak-EWMA (as in Finagle and Linkerd): a slower observation replaces the
    average at once; faster ones pull it down with weight ``1 - exp(-Δt/decay)``,
    so a target that got slow is avoided immediately and trusted again gradually.

    :param decay: seconds for the weight of an old observation to fall to 1/e.
    :param clock: monotonic seconds; injected in tests.
    """

    def __init__(self, decay: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.decay = decay
        self.clock = clock
        self.inflight: dict[str, int] = {}
        self._ewma: dict[str, float] = {}
        self._stamp: dict[str, float] = {}

    def started(self, target: str) -> None:
        self.inflight[target] = self.inflight.get(target, 0) + 1

    def finished(self, target: str, latency: float | None) -> None:
        """An attempt ended; ``latency`` (seconds) if it produced a response or a first chunk.

        A failed attempt is recorded as at least as slow as the slowest seen, so
        latency-aware strategies move away from failing targets too.
        """
        self.cancelled(target)
        if latency is None:
            latency = max(self._ewma.values(), default=1.0) * 2
        self.observe(target, latency)

    def cancelled(self, target: str) -> None:
        """An attempt abandoned by its caller: no longer in flight, nothing learned."""
        count = self.inflight.get(target, 1) - 1
        if count > 0:
            self.inflight[target] = count
        else:
            self.inflight.pop(target, None)

    def observe(self, target: str, latency: float) -> None:
        now = self.clock()
        previous = self._ewma.get(target)
        if previous is None or latency > previous:
            self._ewma[target] = latency
        else:
            weight = math.exp(-(now - self._stamp.get(target, now)) / self.decay)
            self._ewma[target] = previous * weight + latency * (1 - weight)
        self._stamp[target] = now

    def latency(self, target: str) -> float | None:
        """The peak-EWMA latency in seconds, or None before any observation."""
        return self._ewma.get(target)

    def busy(self, target: str) -> int:
        return self.inflight.get(target, 0)
