"""Live state: what the planner may read of it, and where it is kept.

``StateSnapshot`` is what the planner sees: taken once per request, so a plan
is a pure function of its inputs. The counters behind budgets and rate limits
and the circuit breakers live behind ``StateBackend`` (``turnout.state.base``),
with three implementations: ``memory`` (default), ``sqlite`` (survives a
restart) and ``redis`` (shared by every replica).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from turnout.state.base import (
    BreakerRule,
    BreakerState,
    Counter,
    Hold,
    Release,
    StateBackend,
    StateUnavailable,
)

if TYPE_CHECKING:
    from turnout.state.stats import TargetStats

__all__ = [
    "EMPTY_STATE",
    "BreakerRule",
    "BreakerState",
    "Counter",
    "Hold",
    "Release",
    "StateBackend",
    "StateSnapshot",
    "StateUnavailable",
]


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """What the planner may read of live state.

    :param open_circuits: targets (``provider/model``) or whole providers whose
        circuit is open.
    :param stats: live latency and in-flight figures, read by strategies.
    :param rate_limited: targets at one of their rate limits → which and until when.
    :param over_budget: targets whose worst case does not fit a budget → which
        budget and when it resets.
    """

    open_circuits: frozenset[str] = frozenset()
    stats: TargetStats | None = None
    rate_limited: Mapping[str, str] = field(default_factory=dict)
    over_budget: Mapping[str, str] = field(default_factory=dict)


EMPTY_STATE = StateSnapshot()
