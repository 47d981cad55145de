"""The built-in routing strategies beyond ``weighted``: ordered, lowest_latency,
least_busy, cheapest and sticky. Ordinary plugins: registered through
``turnout_register_strategies`` exactly as a third-party strategy would be.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from turnout.plugin_api import (
    Candidate,
    Ranking,
    RegisterStrategy,
    Strategy,
    StrategyInput,
    hookimpl,
    weighted_order,
)

__all__ = ["Cheapest", "LeastBusy", "LowestLatency", "Ordered", "Sticky"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ordered(Strategy):
    """Priority order, as written; the next only when the one before is unavailable."""

    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        return Ranking(list(targets))


class LowestLatencyOptions(_Options):
    explore: float = Field(0.05, ge=0, le=1, description="share of picks made at random")


class LowestLatency(Strategy):
    """Power of two choices over peak-EWMA latency times (in-flight + 1).

    Two targets are drawn by weight and the one with the lower score leads; a
    target never observed scores 0, so new and recovered targets get traffic.
    With probability ``explore`` the draw is taken as is, so a target that was
    slow is measured again and noticed when it recovers.
    """

    Options = LowestLatencyOptions

    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        stats = given.stats
        explore = self.options.explore if self.options is not None else 0.05

        def score(t: Candidate) -> float:
            latency = stats.latency(t.name) if stats is not None else None
            busy = stats.busy(t.name) if stats is not None else 0
            return (latency or 0.0) * (busy + 1)

        drawn = weighted_order(targets, given.rng)
        if len(drawn) > 1 and given.rng.random() >= explore:
            first, second = drawn[0], drawn[1]
            if score(second) < score(first):
                drawn[0], drawn[1] = second, first
            drawn[1:] = sorted(drawn[1:], key=score)
        notes = {}
        for t in drawn:
            latency = stats.latency(t.name) if stats is not None else None
            notes[t.name] = (
                f"ewma {latency * 1000:.0f}ms, {stats.busy(t.name) if stats else 0} in flight"
                if latency is not None
                else "no latency yet"
            )
        return Ranking(drawn, notes)


class LeastBusy(Strategy):
    """Fewest requests in flight first; ties broken by weighted random."""

    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        stats = given.stats
        drawn = weighted_order(targets, given.rng)

        def busy(t: Candidate) -> int:
            return stats.busy(t.name) if stats is not None else 0

        drawn.sort(key=busy)  # stable: the weighted draw breaks ties
        return Ranking(drawn, {t.name: f"{busy(t)} in flight" for t in drawn})


class Cheapest(Strategy):
    """Lowest worst-case cost for this request first; ties broken by weight.

    Unpriced targets come last. The cost cap and budgets still apply after.
    """

    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        costs: dict[str, float] = {}
        for t in targets:
            bound = t.info.output_bound(given.prompt_tokens, given.output_limit)
            cost = t.info.worst_case_cost(given.prompt_tokens, bound)
            costs[t.name] = math.inf if cost is None else cost
        ordered = sorted(targets, key=lambda t: (costs[t.name], -t.weight))
        # a priced target's figure is its worst case, which the plan shows anyway
        return Ranking(ordered, {t.name: "no price" for t in ordered if costs[t.name] == math.inf})


class StickyOptions(_Options):
    key: str = Field(
        "user",
        description='what to hash: "user", "header:<name>" or "metadata:<key>"',
        pattern=r"^(user|header:.+|metadata:.+)$",
    )


def _unit_hash(key: str, target: str) -> float:
    digest = hashlib.blake2b(f"{key}\x00{target}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


class Sticky(Strategy):
    """Weighted rendezvous hashing on a request field.

    The same key always ranks the targets the same way, each target wins its
    weight's share of keys, and adding or removing a target moves only the keys
    that target wins or held. Requests without the key fall back to weighted.
    """

    Options = StickyOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        spec = options.key if options is not None else "user"
        kind, _, name = spec.partition(":")
        self._kind: Literal["user", "header", "metadata"] = kind  # type: ignore[assignment]
        self._name = name.lower() if kind == "header" else name

    def key_of(self, given: StrategyInput) -> str | None:
        if self._kind == "user":
            return given.request.user
        if self._kind == "header":
            return given.headers.get(self._name)
        value = (given.request.metadata or {}).get(self._name)
        return None if value is None else str(value)

    def rank(self, targets: Sequence[Candidate], given: StrategyInput) -> Ranking:
        key = self.key_of(given)
        if not key:
            return Ranking(weighted_order(targets, given.rng), {"*": "no sticky key: weighted"})
        scores = {t.name: -t.weight / math.log(_unit_hash(key, t.name)) for t in targets}
        ordered = sorted(targets, key=lambda t: scores[t.name], reverse=True)
        bucket = _unit_hash(key, "")
        return Ranking(ordered, {ordered[0].name: f"key hash {bucket:.4f}"})


@hookimpl
def turnout_register_strategies(register: RegisterStrategy) -> None:
    register("ordered", Ordered)
    register("lowest_latency", LowestLatency)
    register("least_busy", LeastBusy)
    register("cheapest", Cheapest)
    register("sticky", Sticky)
