"""What the planner may know of live state: a snapshot, taken once per request.

Kept tiny on purpose: the planner reads it, never the live state, so a plan is
a pure function of its inputs. Breakers, rate limits and budgets add to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stats import TargetStats

__all__ = ["EMPTY_STATE", "StateSnapshot"]


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """What the planner may read of live state.

    :param open_circuits: targets (``provider/model``) or whole providers whose
        circuit is open.
    :param stats: live latency and in-flight figures, read by strategies.
    """

    open_circuits: frozenset[str] = frozenset()
    stats: TargetStats | None = None


EMPTY_STATE = StateSnapshot()
