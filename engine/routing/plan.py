"""What the planner decides: the ordered attempts of one request, and why.

Plans are values: treat them as read-only. (They are not frozen dataclasses
only because frozen ones cost a microsecond more to build on the hot path.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnout.policy.table import CompiledRoute, CompiledTarget

__all__ = ["Attempt", "Plan", "Role", "Skip", "SkipReason"]


class Role(enum.StrEnum):
    """Why a target is in the plan at all."""

    PICKED = "pick"
    TARGET = "ranked target"
    FALLBACK = "route fallback"
    REQUEST_FALLBACK = "request fallback"
    DIRECT = "direct"


class SkipReason(enum.StrEnum):
    COST_CAP = "cost_cap"
    CONTEXT_WINDOW = "context_window"
    CIRCUIT_OPEN = "circuit_open"
    PROVIDER_DISABLED = "provider_disabled"
    UNKNOWN_PROVIDER = "unknown_provider"
    DUPLICATE = "duplicate"
    NOT_ALLOWED = "not_allowed"
    BUDGET = "budget"
    RATE_LIMITED = "rate_limited"


@dataclass(slots=True)
class Attempt:
    """One upstream target to try, with the reason it is in the plan.

    :param target: the compiled target (provider instance, model, prices).
    :param role: why it is here; ``weight_share`` for a weighted pick.
    :param key_index: which of the provider's API keys to use (never the key).
    :param estimated_cost: worst-case USD, or None if unpriced.
    :param output_ceiling: see the attribute.
    """

    target: CompiledTarget
    role: Role
    position: int
    note: str | None = None
    key_index: int | None = None
    estimated_cost: float | None = None
    output_ceiling: int | None = None
    """The output limit the provider sends when it is not the request's own
    (``Provider.output_ceiling``: a default ``max_tokens``, thinking room);
    None: the plan's ``output_limit``."""

    def output_limit(self, plan_limit: int | None) -> int | None:
        """The output limit this attempt sends, given the plan's."""
        return plan_limit if self.output_ceiling is None else self.output_ceiling

    @property
    def provider(self) -> str:
        return self.target.provider.name

    @property
    def model(self) -> str:
        return self.target.model

    @property
    def name(self) -> str:
        return self.target.name

    def why(self, route: CompiledRoute | None = None) -> str:
        strategy = route.strategy_name if route is not None else "weighted"
        note = self.note
        weighted_pick = self.role is Role.PICKED and strategy == "weighted"
        if note is None and weighted_pick and route is not None and len(route.targets) > 1:
            note = f"{self.target.weight / route.total_weight:.0%} of traffic"
        if self.role is Role.PICKED:
            text = f"{strategy} pick"
        elif self.role is Role.TARGET:
            text = f"{strategy} #{self.position + 1}"
        elif self.role in (Role.FALLBACK, Role.REQUEST_FALLBACK):
            text = f"{self.role.value} #{self.position + 1}"
        else:
            text = self.role.value
        if note:
            text += f" ({note})"
        if self.estimated_cost is not None:
            text += f", worst case ${self.estimated_cost:.6f}"
        if self.key_index is not None and len(self.target.provider.api_keys) > 1:
            text += f", key #{self.key_index + 1}"
        return text


@dataclass(slots=True)
class Skip:
    """A target that was considered and left out, and why."""

    name: str
    role: Role
    reason: SkipReason
    detail: str


@dataclass(slots=True)
class Plan:
    """The ordered attempts for one request; a pure function of its inputs."""

    route: CompiledRoute
    model_requested: str
    attempts: tuple[Attempt, ...]
    skipped: tuple[Skip, ...]
    prompt_tokens: int
    output_limit: int | None
    strategy_note: str | None = None
    prompt_bound: int | None = None
    """A prompt size no tokenizer exceeds (``turnout.routing.tokens.prompt_bound``),
    set by the serve path when a budget will hold it; None: the estimate stands."""
    choices: int = 1
    """Completions the request asks for (``n``): each may bill the whole output bound."""

    def skip_records(self) -> list[dict[str, Any]] | None:
        """The skipped targets as ``extra_fields.skipped`` says them, or None."""
        if not self.skipped:
            return None
        return [
            {"target": s.name, "role": s.role.value, "reason": s.reason.value, "detail": s.detail}
            for s in self.skipped
        ]

    def explain(self) -> str:
        """A human-readable account: each attempt in order and each skipped target."""
        lines = [
            f"route {self.route.name!r} for model {self.model_requested!r}"
            f" ({self.route.describe_match()})",
            f"prompt ≈ {self.prompt_tokens} tokens; max output "
            + (f"{self.output_limit} tokens" if self.output_limit else "not set"),
        ]
        if len(self.route.targets) > 1:
            note = f" ({self.strategy_note})" if self.strategy_note else ""
            lines.append(f"strategy {self.route.strategy_name}{note}")
        if self.route.cost_cap is not None:
            lines.append(f"cost cap ${self.route.cost_cap:g} per request (worst case)")
        lines.append("attempts:" if self.attempts else "attempts: none")
        for number, attempt in enumerate(self.attempts, 1):
            lines.append(f"  {number}. {attempt.name}: {attempt.why(self.route)}")
        if self.skipped:
            lines.append("skipped:")
            for skip in self.skipped:
                lines.append(
                    f"  - {skip.name} ({skip.role.value}): {skip.reason.value}: {skip.detail}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route.name,
            "strategy": self.route.strategy_name,
            "model_requested": self.model_requested,
            "prompt_tokens": self.prompt_tokens,
            "output_limit": self.output_limit,
            "attempts": [
                {
                    "target": a.name,
                    "why": a.why(self.route),
                    "estimated_cost": a.estimated_cost,
                }
                for a in self.attempts
            ],
            "skipped": [
                {
                    "target": s.name,
                    "role": s.role.value,
                    "reason": s.reason.value,
                    "detail": s.detail,
                }
                for s in self.skipped
            ],
        }
