"""The last requests the gateway served, for the dashboard: a bounded ring and
bounded subscriber queues, fed by an ordinary ``turnout_request_finished`` observer.

Registered on the engine's plugin manager only when the dashboard is on, so a
gateway without it pays nothing. Nothing of a request's content is kept: ids,
route, models, status, latency, cost and the attempt trail.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from typing import Any

from turnout.contract.hookspecs import hookimpl
from turnout.run.context import RequestContext, RequestOutcome

__all__ = ["RecentRequests"]

_QUEUE = 256  # a subscriber further behind than this misses requests, never grows memory


class RecentRequests:
    """A ring of the last ``size`` requests and the live queues of dashboard pages.

    :param size: requests kept.
    :param subscribers: most pages following live at once; more are refused.
    """

    def __init__(self, size: int = 100, subscribers: int = 32) -> None:
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self.max_subscribers = subscribers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Newest first."""
        yield from reversed(self._ring)

    @hookimpl(trylast=True)
    def turnout_request_finished(self, ctx: RequestContext, outcome: RequestOutcome) -> None:
        served = ctx.attempt
        row = {
            "at": time.time(),
            "request_id": ctx.request_id,
            "route": ctx.plan.route.name,
            "model_requested": ctx.plan.model_requested,
            "served_by": served.name if served is not None and outcome.status == "ok" else None,
            "status": outcome.status,
            "status_code": outcome.status_code,
            "latency_ms": round(outcome.latency_ms, 1),
            "cost": outcome.cost,
            "stream": ctx.stream,
            "key": ctx.key.name if ctx.key is not None else None,
            "attempts": [
                {
                    "target": f"{r.provider}/{r.model}",
                    "outcome": r.outcome,
                    "latency_ms": r.latency_ms,
                    "status_code": r.status_code,
                }
                for r in ctx.trail
            ],
        }
        self._ring.append(row)
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()  # drop the oldest for a slow page
            queue.put_nowait(row)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]] | None:
        """A queue of requests from now on, or None when too many pages follow already."""
        if len(self._queues) >= self.max_subscribers:
            return None
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues.discard(queue)
