"""The compiled policy: an immutable routing table, built once by ``compile``
and shared by every request (OPA's "prepared query")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from turnout.contract.guardrail import CompiledGuardrail
from turnout.contract.provider import Provider
from turnout.contract.strategy import Strategy, Weighted
from turnout.policy.catalog import Catalog, ModelInfo
from turnout.policy.limits import CompiledLimits
from turnout.policy.matching import Matcher
from turnout.policy.models import CacheConfig, Policy, ProviderConfig, Retry, Timeout
from turnout.policy.redaction import Redactor, provider_secrets
from turnout.wire.chat import ChatRequest

__all__ = ["CompiledProvider", "CompiledRoute", "CompiledTarget", "RoutingTable", "make_target"]

_TARGET_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True, eq=False)
class CompiledProvider:
    """A provider instance, ready to call; ``disabled`` says why it cannot be."""

    name: str
    config: ProviderConfig
    provider: Provider
    api_keys: tuple[str, ...]
    key_weights: tuple[float, ...]
    disabled: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTarget:
    provider: CompiledProvider
    model: str
    weight: float
    info: ModelInfo
    name: str = field(init=False)
    """``provider/model``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"{self.provider.name}/{self.model}")


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRoute:
    name: str
    matcher: Matcher
    targets: tuple[CompiledTarget, ...]
    fallbacks: tuple[CompiledTarget, ...]
    retry: Retry
    timeout: Timeout
    cost_cap: float | None
    request_fallbacks: str
    strategy: Strategy = field(default_factory=Weighted)
    strategy_name: str = "weighted"
    shadow: tuple[CompiledTarget, float] | None = None
    implicit: bool = False
    cache: CacheConfig | None = None
    """Response caching (defaults merged in), or None when off."""
    guardrails: tuple[CompiledGuardrail, ...] = ()
    hooks: Any = field(default=None, compare=False, repr=False)
    """The request hooks this route calls (``turnout.contract.route_hooks``), selected
    by the engine once its plugins are started and again when they change."""
    total_weight: float = field(init=False)
    weighted: bool = field(init=False)
    """The route uses the engine's own weighted strategy (a fast path in the planner)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_weight", sum(t.weight for t in self.targets) or 1.0)
        object.__setattr__(self, "weighted", type(self.strategy) is Weighted)

    @property
    def direct(self) -> bool:
        """A route with no targets sends ``provider/model`` names straight through."""
        return not self.targets

    def describe_match(self) -> str:
        if self.implicit:
            return "implicit direct route for provider/model names"
        return "match: " + self.matcher.describe()


@dataclass(eq=False)
class RoutingTable:
    """The compiled policy: built once, shared by every request, never mutated
    except for a bounded memo of targets named at request time."""

    file: str
    policy: Policy
    providers: Mapping[str, CompiledProvider]
    routes: tuple[CompiledRoute, ...]
    direct_route: CompiledRoute | None
    catalog: Catalog
    limits: CompiledLimits | None = None
    """Budgets, rate limits, breaker, API keys and state; None when the policy sets none."""
    _memo: dict[str, CompiledTarget | None] = field(default_factory=dict)

    @cached_property
    def secrets(self) -> tuple[str, ...]:
        """Every provider secret of the policy (``turnout.policy.redaction``): masked
        out of whatever an upstream sends back before a caller or a log sees it."""
        return provider_secrets(self.providers.values())

    @cached_property
    def redactor(self) -> Redactor:
        """Masks ``secrets`` (false when there are none)."""
        return Redactor(self.secrets)

    def match(
        self,
        request: ChatRequest,
        headers: Mapping[str, str] | None = None,
        prompt_tokens: int = 0,
    ) -> CompiledRoute | None:
        """The first route, in file order, that matches; else the direct route for
        ``provider/model`` names of known providers; else None."""
        for route in self.routes:
            if route.matcher.matches(request, headers, prompt_tokens):
                return route
        if self.direct_route is not None and self.target(request.model) is not None:
            return self.direct_route
        return None

    def target(self, name: str) -> CompiledTarget | None:
        """The target ``provider/model`` names, or None if the provider is unknown."""
        try:
            return self._memo[name]
        except KeyError:
            pass
        provider_name, slash, model = name.partition("/")
        compiled = self.providers.get(provider_name) if slash and model else None
        target = make_target(compiled, model, 1.0, self.catalog) if compiled is not None else None
        if len(self._memo) < _TARGET_MEMO_LIMIT:
            self._memo[name] = target
        return target


def make_target(
    provider: CompiledProvider, model: str, weight: float, catalog: Catalog
) -> CompiledTarget:
    cls = type(provider.provider)
    info = catalog.lookup(provider.name, model, price_provider=cls.price_provider, free=cls.free)
    return CompiledTarget(provider, model, weight, info)
