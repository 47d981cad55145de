"""What the planner may know of live state: a snapshot, taken once per request.

Kept tiny on purpose: the planner reads it, never the live state, so a plan is
a pure function of its inputs. Breakers, rate limits and budgets add to it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EMPTY_STATE", "StateSnapshot"]


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Targets (``provider/model``) or whole providers whose circuit is open."""

    open_circuits: frozenset[str] = frozenset()


EMPTY_STATE = StateSnapshot()
