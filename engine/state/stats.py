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

    Bounded: a caller can name any ``provider/model`` on a direct route, so the
    figures of at most ``limit`` targets are kept, the least recently observed
    forgotten first; every update is O(1) whatever the number of names seen.

    :param decay: seconds for the weight of an old observation to fall to 1/e.
    :param clock: monotonic seconds; injected in tests.
    :param limit: most targets whose latency is remembered.
    """

    def __init__(
        self,
        decay: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        limit: int = 4096,
    ) -> None:
        self.decay = decay
        self.clock = clock
        self.limit = limit
        self.inflight: dict[str, int] = {}
        self._ewma: dict[str, float] = {}
        self._stamp: dict[str, float] = {}
        self._slowest = 0.0
        """A peak-EWMA over every target's observations: what "slow" means just now."""
        self._slowest_stamp = 0.0

    def started(self, target: str) -> None:
        self.inflight[target] = self.inflight.get(target, 0) + 1

    def finished(self, target: str, latency: float | None) -> None:
        """An attempt ended; ``latency`` (seconds) if it produced a response or a first chunk.

        A failed attempt is recorded as at least as slow as the slowest seen, so
        latency-aware strategies move away from failing targets too.
        """
        self.cancelled(target)
        if latency is None:
            latency = (self._slowest or 1.0) * 2
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
        previous = self._ewma.pop(target, None)  # re-inserted last: the dicts keep LRU order
        stamp = self._stamp.pop(target, now)
        self._ewma[target] = self._peak(previous, stamp, latency, now)
        self._stamp[target] = now
        self._slowest = self._peak(self._slowest or None, self._slowest_stamp, latency, now)
        self._slowest_stamp = now
        if len(self._ewma) > self.limit:
            oldest = next(iter(self._ewma))
            del self._ewma[oldest], self._stamp[oldest]

    def _peak(self, previous: float | None, stamp: float, latency: float, now: float) -> float:
        if previous is None or latency > previous:
            return latency
        weight = math.exp(-(now - stamp) / self.decay)
        return previous * weight + latency * (1 - weight)

    def latency(self, target: str) -> float | None:
        """The peak-EWMA latency in seconds, or None before any observation."""
        return self._ewma.get(target)

    def busy(self, target: str) -> int:
        return self.inflight.get(target, 0)
