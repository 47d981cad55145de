"""Routing strategies: how a route orders its targets for one request.

A strategy is a plugin type like a provider: a small class with one method,
registered with ``turnout_register_strategies`` and chosen per route in
routes.yaml (``strategy: lowest_latency`` or ``strategy: {type: sticky, key: user}``).
It only orders; the planner still skips targets that are disabled, too dear,
too small or behind an open breaker, in the order the strategy gave.

The engine itself knows only ``weighted``, the default; the other built-ins
live in ``plugins/strategies.py`` and register like any third-party strategy.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel
from turnout.state.stats import TargetStats
from turnout.wire.chat import ChatRequest

__all__ = [
    "Candidate",
    "CandidateInfo",
    "Ranking",
    "Strategy",
    "StrategyInput",
    "Weighted",
    "weighted_index",
    "weighted_order",
]


class CandidateInfo(Protocol):
    """What the engine knows of a target's model (``turnout.policy.catalog.ModelInfo``)."""

    def output_bound(self, prompt_tokens: int, requested: int | None) -> int | None:
        """The most output tokens an attempt can bill, or None if unbounded."""

    def worst_case_cost(self, prompt_tokens: int, output_tokens: int | None) -> float | None:
        """USD of the dearest outcome, or None when it cannot be bounded."""


class Candidate(Protocol):
    """A target as a strategy sees it (the compiled target of a route).

    ``name`` is ``provider/model``; ``weight`` the route's weight for it.
    """

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def info(self) -> CandidateInfo: ...


C = TypeVar("C", bound=Candidate)


@dataclass(slots=True)
class StrategyInput:
    """What a strategy may look at for one request (all read-only)."""

    request: ChatRequest
    headers: Mapping[str, str]
    prompt_tokens: int
    output_limit: int | None
    rng: random.Random
    stats: TargetStats | None


@dataclass(slots=True)
class Ranking:
    """Targets in the order to try them, with the figures behind the choice.

    :param notes: per target name, the figure the strategy used ("ewma 120ms").
    """

    targets: list[Candidate]
    notes: dict[str, str] = field(default_factory=dict)


class Strategy(abc.ABC):
    """Base class of routing strategies.

    ``Options`` (a pydantic model, optional) validates the strategy's options
    in routes.yaml at load time. Constructors must do no I/O.
    """

    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    @abc.abstractmethod
    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        """Order ``targets`` (the route's, in file order) for this request.

        Must be pure apart from ``given.rng``, and return every target once
        (the same objects: the planner goes on with them).
        """


def weighted_index(weights: Sequence[float], rng: random.Random) -> int:
    point = rng.random() * sum(weights)
    for i, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return i
    return len(weights) - 1


def weighted_order(targets: Sequence[C], rng: random.Random) -> list[C]:
    """Weighted sampling without replacement: the first is a weighted pick, and
    each later one is a weighted pick among those left."""
    if len(targets) == 1:
        return [targets[0]]
    if len(targets) == 2:  # the common case, with one draw
        first, second = targets
        if rng.random() * (first.weight + second.weight) < first.weight:
            return [first, second]
        return [second, first]
    left = list(targets)
    order = []
    while len(left) > 1:
        order.append(left.pop(weighted_index([t.weight for t in left], rng)))
    order.append(left[0])
    return order


class Weighted(Strategy):
    """Random by weight; the rest follow in weighted order (the default)."""

    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        # the planner calls weighted_order directly for this class; the share
        # shown by explain() is computed there, only when asked for
        return Ranking(weighted_order(targets, given.rng))
