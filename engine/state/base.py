"""The state interface every backend implements, and the breaker rules they share.

A backend keeps two kinds of thing:

- **counters** (budgets and rate limits): per key, ``used`` (settled) and
  ``held`` (reserved by requests in flight), in integer units (nano-USD, tokens
  or requests, so sums are exact). ``reserve`` adds to ``held`` only if every
  counter of the batch stays within its limit — all or nothing, atomically
  with every other process sharing the backend; ``release`` moves a hold to
  ``used`` at its actual size. Keys name their window, so a new window is a new
  key and old ones expire.
- **circuit breakers** per target, moved by ``check`` / ``success`` /
  ``failure`` events through ``transition`` (the Redis backend runs the same
  rules in Lua).
- **documents**: small JSON texts by key with an expiry (stored Responses API
  conversations, ``turnout.surfaces.responses.store``): ``put_document``,
  ``get_document``, ``delete_document``. Last write wins; no atomicity beyond
  one key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

__all__ = [
    "BreakerEvent",
    "BreakerRule",
    "BreakerState",
    "Counter",
    "Hold",
    "Release",
    "StateBackend",
    "StateUnavailable",
    "breaker_view",
    "transition",
]

BreakerEvent = Literal["check", "success", "failure"]


class StateUnavailable(Exception):
    """The backend could not be reached or failed; the caller decides open or closed."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Reserve ``amount`` on counter ``key`` if ``used + held + amount <= limit``.

    :param expires: wall-clock seconds after which the counter may be dropped.
    """

    key: str
    limit: int
    amount: int
    expires: float


@dataclass(frozen=True, slots=True)
class Release:
    """Take ``held`` off the counter's holds and add ``used`` to its use."""

    key: str
    held: int
    used: int
    expires: float


@dataclass(frozen=True, slots=True)
class Counter:
    used: int = 0
    held: int = 0


@dataclass(frozen=True, slots=True)
class BreakerRule:
    """When a target's circuit opens, and for how long.

    :param failures: consecutive failures that open it.
    :param ratio: failure share in ``window`` that opens it (with ``min_calls``).
    :param cooldown: seconds open before one probe is let through.
    """

    failures: int = 5
    ratio: float | None = None
    min_calls: int = 20
    window: float = 60.0
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A breaker after an event: ``closed``, ``open`` or ``half_open``; whether
    the checked call may go ahead (``check`` only)."""

    state: str
    allowed: bool = True


class StateBackend(ABC):
    """Where budgets, rate limits and breakers are kept (``state: {backend: ...}``).

    Implementations must make ``reserve`` atomic against every other user of the
    same store. Raise ``StateUnavailable`` when the store cannot answer.
    """

    name: ClassVar[str] = "?"
    shared: ClassVar[bool] = False
    """True if several processes can use the same store (``--workers N``)."""

    @abstractmethod
    async def reserve(self, holds: Sequence[Hold]) -> int:
        """Apply every hold, or none: -1 if all fit, else the index of the first
        that does not. Keys in one batch are distinct."""

    @abstractmethod
    async def release(self, releases: Sequence[Release]) -> None:
        """Settle holds: ``held -= r.held; used += r.used``, unconditionally."""

    @abstractmethod
    async def read(self, keys: Sequence[str]) -> list[Counter]:
        """The counters named, zero for keys never written (or expired)."""

    @abstractmethod
    async def breaker(
        self, target: str, event: BreakerEvent, now: float, rule: BreakerRule
    ) -> BreakerState:
        """Apply one event to ``target``'s breaker atomically (see ``transition``)."""

    @abstractmethod
    async def breakers(self, targets: Sequence[str]) -> list[dict[str, Any]]:
        """The stored fields of each target's breaker (empty: closed)."""

    async def put_document(self, key: str, value: str, expires: float) -> None:
        """Store ``value`` under ``key`` until wall-clock ``expires``, replacing any."""
        raise NotImplementedError(f"the {self.name} state backend keeps no documents")

    async def get_document(self, key: str) -> str | None:
        """The document under ``key``; None if never stored, deleted or expired."""
        raise NotImplementedError(f"the {self.name} state backend keeps no documents")

    async def delete_document(self, key: str) -> bool:
        """Forget ``key``; whether there was a live document to forget."""
        raise NotImplementedError(f"the {self.name} state backend keeps no documents")

    async def clear(self) -> None:  # pragma: no cover - tests and admin use only
        """Forget every counter and breaker."""
        raise NotImplementedError

    async def aclose(self) -> None:  # noqa: B027 - optional: most backends hold nothing
        """Release connections and files."""


BREAKER_IDLE = 86_400.0
"""Seconds after its last event that a target's breaker is forgotten (reads
closed): the state of targets named once, e.g. on a direct route, does not
pile up."""

BREAKER_LIMIT = 10_000
"""Most breakers one in-memory state keeps; past it the least recently used goes."""


def transition(
    fields: dict[str, Any], event: BreakerEvent, now: float, rule: BreakerRule
) -> tuple[dict[str, Any], BreakerState]:
    """Breaker rules as a pure function of stored fields; returns the new fields.

    Fields: ``state`` (closed/open/half_open), ``fails`` (consecutive),
    ``opened``, ``probe`` (when the half-open probe was let through), ``win``,
    ``n``, ``nf`` (calls and failures in the ratio window).
    """
    f = dict(fields)
    state = f.get("state") or "closed"
    if event == "check":
        if state == "closed":
            return f, BreakerState("closed")
        since = now - float(f.get("opened", 0) if state == "open" else f.get("probe", 0))
        if since < rule.cooldown:
            return f, BreakerState(state, allowed=False)
        f["state"], f["probe"] = "half_open", now
        return f, BreakerState("half_open")
    if event == "success":
        if state != "closed":
            return {"state": "closed"}, BreakerState("closed")
        f["fails"] = 0
        _count(f, now, rule, failed=False)
        return f, BreakerState("closed")
    if state != "closed":  # a failed probe, or a late failure while open
        return {"state": "open", "opened": now}, BreakerState("open")
    f["fails"] = int(f.get("fails", 0)) + 1
    n, nf = _count(f, now, rule, failed=True)
    tripped = f["fails"] >= rule.failures or (
        rule.ratio is not None and n >= rule.min_calls and nf / n >= rule.ratio
    )
    if tripped:
        return {"state": "open", "opened": now}, BreakerState("open")
    return f, BreakerState("closed")


def _count(f: dict[str, Any], now: float, rule: BreakerRule, *, failed: bool) -> tuple[int, int]:
    if now - float(f.get("win", 0)) >= rule.window:
        f["win"], f["n"], f["nf"] = now, 0, 0
    f["n"] = int(f.get("n", 0)) + 1
    f["nf"] = int(f.get("nf", 0)) + (1 if failed else 0)
    return f["n"], f["nf"]


def breaker_view(fields: dict[str, Any], now: float, rule: BreakerRule) -> str:
    """What a request should do with a target: ``closed`` (call it), ``open``
    (skip it) or ``probe`` (its cool-down is over: try to be the one probe)."""
    state = fields.get("state") or "closed"
    if state == "closed":
        return "closed"
    since = now - float(fields.get("opened", 0) if state == "open" else fields.get("probe", 0))
    return "open" if since < rule.cooldown else "probe"
