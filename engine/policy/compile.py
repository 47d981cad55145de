"""Compile a policy document into an immutable routing table.

Pure: no I/O. Every problem in the document is collected — schema errors per
section, then cross-references (unknown provider types and instances, duplicate
or unreachable routes, unpriced targets under a cost cap) — and raised together
as one PolicyError, each with its file, line and column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from turnout.contract.guardrail import CompiledGuardrail, Guardrail
from turnout.contract.provider import Provider, ProviderSettings
from turnout.contract.strategy import Strategy, Weighted
from turnout.errors import PolicyError, Problem
from turnout.policy.catalog import Catalog
from turnout.policy.extensions import build, did_you_mean, find_type
from turnout.policy.limits import compile_limits
from turnout.policy.loader import Document
from turnout.policy.matching import Matcher
from turnout.policy.models import (
    CacheConfig,
    Defaults,
    Gateway,
    GuardrailSpec,
    ModelOverride,
    Policy,
    ProviderConfig,
    Route,
    StrategySpec,
    Telemetry,
)
from turnout.policy.problems import problems_from_validation
from turnout.policy.table import (
    CompiledProvider,
    CompiledRoute,
    CompiledTarget,
    RoutingTable,
    make_target,
)
from turnout.types import JSONPath

__all__ = ["compile_policy"]

_LIMIT_FIELDS = ("state", "budgets", "rate_limits", "breaker", "keys")


class _Compiler:
    def __init__(
        self,
        doc: Document,
        provider_types: Mapping[str, type[Provider]],
        strategy_types: Mapping[str, type[Strategy]],
        guardrail_types: Mapping[str, type[Guardrail]],
    ) -> None:
        self.strategy_types = strategy_types
        self.guardrail_types = guardrail_types
        self.doc = doc
        self.types = provider_types
        self.problems: list[Problem] = []
        self.route_specs: list[tuple[Route, JSONPath]] = []

    def problem(self, path: JSONPath, message: str, hint: str | None = None) -> None:
        self.problems.append(self.doc.problem(path, message, hint))

    def validate(self, model: type[BaseModel], data: Any, path: JSONPath) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.problems += problems_from_validation(exc, model, self.doc, path)
            return None

    def run(self) -> RoutingTable:
        data = self.doc.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(
                [self.doc.problem((), "a policy must be a mapping with providers and routes")]
            )
        top = self.validate(
            Policy,
            {
                k: v
                for k, v in data.items()
                if k not in ("providers", "models", "defaults", "routes")
            },
            (),
        )
        providers = self.providers(self._section(data, "providers", dict))
        overrides = self.models(self._section(data, "models", dict), providers)
        defaults = (
            self.validate(Defaults, self._section(data, "defaults", dict), ("defaults",))
            or Defaults()
        )
        catalog = Catalog(overrides)
        self.default_strategy = self.strategy(defaults.strategy, ("defaults", "strategy"))
        self.default_guardrails = self.guardrails(defaults.guardrails, ("defaults", "guardrails"))
        routes = self.routes(self._section(data, "routes", list), providers, defaults, catalog)
        limits = compile_limits(top, self.route_specs, providers, self.problem) if top else None
        self.check_missing_env()
        if self.problems:
            raise PolicyError(self.problems)
        policy = Policy.model_construct(
            version=top.version if top else 1,
            providers={name: p.config for name, p in providers.items()},
            models=overrides,
            defaults=defaults,
            routes=[],
            gateway=top.gateway if top else Gateway(),
            telemetry=top.telemetry if top else Telemetry(),
            **({name: getattr(top, name) for name in _LIMIT_FIELDS} if top else {}),
        )
        direct = None
        if defaults.direct:
            direct = CompiledRoute(
                "direct",
                Matcher(None, None, (), ()),
                (),
                (),
                defaults.retry,
                defaults.timeout,
                None,
                defaults.request_fallbacks,
                implicit=True,
                cache=_cache(defaults.cache, None),
                guardrails=self.default_guardrails or (),
            )
        return RoutingTable(
            self.doc.file, policy, providers, tuple(routes), direct, catalog, limits=limits
        )

    def _section(self, data: dict[str, Any], key: str, kind: type) -> Any:
        value = data.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            self.problem((key,), f"'{key}' must be a {'mapping' if kind is dict else 'list'}")
            return kind()
        return value

    def providers(self, raw: dict[str, Any]) -> dict[str, CompiledProvider]:
        out: dict[str, CompiledProvider] = {}
        for name, body in raw.items():
            path: JSONPath = ("providers", name)
            if not isinstance(name, str) or "/" in name or not name:
                self.problem(path, f"provider name {name!r} must be a non-empty string without '/'")
                continue
            config = self.validate(ProviderConfig, body, path)
            if config is None:
                continue
            cls = self.types.get(config.type)
            if cls is None:
                self.problem(
                    (*path, "type"),
                    f"unknown provider type {config.type!r}",
                    did_you_mean(config.type, list(self.types), "types"),
                )
                continue
            options: Any = config.options
            if cls.Options is not None:
                options = self.validate(cls.Options, config.options, (*path, "options"))
                if options is None:
                    continue
            elif config.options:
                self.problem((*path, "options"), f"provider type {config.type!r} takes no options")
                continue
            if config.api_key is not None and config.api_keys is not None:
                self.problem((*path, "api_keys"), "give api_key or api_keys, not both")
                continue
            keys, weights = self._keys(config, path)
            disabled = self._disabled(config, cls, path, keys)
            can = cls.native_surfaces | cls.native_optional
            unknown = [s for s in config.native if s not in can]
            if unknown:
                self.problem(
                    (*path, "native"),
                    f"provider type {config.type!r} cannot serve {unknown[0]!r} natively",
                    f"it can: {', '.join(sorted(can))}" if can else "it serves none natively",
                )
                continue
            settings = ProviderSettings(
                name=name,
                type=config.type,
                base_url=config.base_url,
                headers=dict(config.headers),
                options=options,
                raw_response=config.raw_response,
                native=frozenset(config.native),
            )
            try:
                instance = cls(settings)
            except Exception as exc:  # a plugin's constructor rejecting its settings
                self.problem(path, f"provider {name!r} could not be set up: {exc}")
                continue
            out[name] = CompiledProvider(name, config, instance, keys, weights, disabled)
        return out

    def _keys(
        self, config: ProviderConfig, path: JSONPath
    ) -> tuple[tuple[str, ...], tuple[float, ...]]:
        if config.api_keys is not None:
            pairs = [
                (k.key, k.weight)
                for i, k in enumerate(config.api_keys)
                if k.key and (*path, "api_keys", i, "key") not in self.doc.missing_env
            ]
        elif config.api_key:
            pairs = [(config.api_key, 1.0)]
        else:
            pairs = []
        return tuple(k for k, _ in pairs), tuple(w for _, w in pairs)

    def _disabled(
        self, config: ProviderConfig, cls: type[Provider], path: JSONPath, keys: tuple[str, ...]
    ) -> str | None:
        if not config.enabled:
            return "disabled in the policy (enabled: false)"
        missing = [
            var
            for p, var in self.doc.missing_env.items()
            if p[: len(path)] == path and p[len(path)] in ("api_key", "api_keys")
        ]
        if missing and not keys:
            return f"API key not set: ${{{missing[0]}}} is empty"
        if cls.requires_api_key and not keys and config.base_url is None:
            return "no api_key configured"
        return None

    def models(
        self, raw: dict[str, Any], providers: Mapping[str, CompiledProvider]
    ) -> dict[str, ModelOverride]:
        out: dict[str, ModelOverride] = {}
        for name, body in raw.items():
            path: JSONPath = ("models", name)
            override = self.validate(ModelOverride, body, path)
            provider, slash, model = str(name).partition("/")
            if not (slash and model):
                self.problem(path, f"model {name!r} is not of the form provider/model")
            elif provider not in providers and provider not in self._declared_providers():
                self.problem(
                    path,
                    f"unknown provider {provider!r} in {name!r}",
                    did_you_mean(provider, list(self._declared_providers()), "providers"),
                )
            elif override is not None:
                out[name] = override
        return out

    def _declared_providers(self) -> list[str]:
        raw = self.doc.data.get("providers") if isinstance(self.doc.data, dict) else None
        return [str(k) for k in raw] if isinstance(raw, dict) else []

    def routes(
        self,
        raw: list[Any],
        providers: Mapping[str, CompiledProvider],
        defaults: Defaults,
        catalog: Catalog,
    ) -> list[CompiledRoute]:
        out: list[CompiledRoute] = []
        seen_names: dict[str, int] = {}
        declared = self._declared_providers()
        for index, body in enumerate(raw):
            path: JSONPath = ("routes", index)
            name = body.get("name") if isinstance(body, dict) else None
            if isinstance(name, str):
                if name in seen_names:
                    line, _ = self.doc.locate(("routes", seen_names[name]))
                    self.problem(
                        (*path, "name"),
                        f"duplicate route name {name!r}",
                        f"first defined at line {line}; route names must be unique",
                    )
                else:
                    seen_names[name] = index
            self.check_references(body, path, declared)
            route = self.validate(Route, body, path)
            if route is None:
                continue
            compiled = self.route(route, path, providers, defaults, catalog)
            if compiled is None:
                continue
            for earlier in out:
                if earlier.matcher.shadows(compiled.matcher):
                    self.problem(
                        (*path, "match"),
                        f"route {route.name!r} can never match",
                        f"route {earlier.name!r} before it matches everything it would; "
                        "move it above, or narrow the earlier route",
                    )
                    break
            out.append(compiled)
        return out

    def check_references(self, body: Any, path: JSONPath, declared: list[str]) -> None:
        """Report targets naming undeclared providers, even in an otherwise invalid route."""
        if not isinstance(body, dict):
            return
        for section in ("targets", "fallbacks"):
            entries = body.get(section)
            for i, entry in enumerate(entries if isinstance(entries, list) else []):
                name = entry.get("model") if isinstance(entry, dict) else entry
                if not isinstance(name, str) or "/" not in name:
                    continue
                provider_name = name.partition("/")[0]
                if provider_name not in declared:
                    self.problem(
                        (*path, section, i),
                        f"unknown provider {provider_name!r} in {name!r}",
                        did_you_mean(provider_name, declared, "providers"),
                    )

    def route(
        self,
        route: Route,
        path: JSONPath,
        providers: Mapping[str, CompiledProvider],
        defaults: Defaults,
        catalog: Catalog,
    ) -> CompiledRoute | None:
        self.route_specs.append((route, path))
        ok = True
        compiled: dict[str, list[CompiledTarget]] = {"targets": [], "fallbacks": []}
        for section in ("targets", "fallbacks"):
            for target in getattr(route, section):
                provider_name, _, model = target.model.partition("/")
                provider = providers.get(provider_name)
                if provider is None:  # reported by check_references or with the provider
                    ok = False
                    continue
                compiled[section].append(make_target(provider, model, target.weight, catalog))
        cap = route.cost_cap.per_request if route.cost_cap else None
        if cap is not None:
            for section, targets in compiled.items():
                for i, t in enumerate(targets):
                    if not t.info.priced:
                        ok = False
                        self.problem(
                            (*path, section, i),
                            f"{t.name} has no known price, so cost_cap cannot be checked",
                            "add it under models: with input_per_mtok and output_per_mtok",
                        )
        spec = route.strategy or defaults.strategy
        strategy = (
            self.strategy(route.strategy, (*path, "strategy"))
            if route.strategy is not None
            else self.default_strategy
        )
        shadow = None
        if route.shadow is not None:
            provider_name, _, model = route.shadow.target.partition("/")
            provider = providers.get(provider_name)
            if provider is None:
                ok = False
                self.problem(
                    (*path, "shadow", "target"),
                    f"unknown provider {provider_name!r} in {route.shadow.target!r}",
                    did_you_mean(provider_name, list(providers), "providers"),
                )
            else:
                shadow = (make_target(provider, model, 1.0, catalog), route.shadow.share)
        guardrails = (
            self.guardrails(route.guardrails, (*path, "guardrails"))
            if route.guardrails is not None
            else self.default_guardrails
        )
        if not ok or strategy is None or guardrails is None:
            return None
        return CompiledRoute(
            cache=_cache(defaults.cache, route.cache),
            guardrails=guardrails,
            strategy=strategy,
            strategy_name=spec.type,
            shadow=shadow,
            name=route.name,
            matcher=Matcher.compile(route.match),
            targets=tuple(compiled["targets"]),
            fallbacks=tuple(compiled["fallbacks"]),
            retry=route.retry or defaults.retry,
            timeout=route.timeout or defaults.timeout,
            cost_cap=cap,
            request_fallbacks=route.request_fallbacks or defaults.request_fallbacks,
        )

    def strategy(self, spec: StrategySpec, path: JSONPath) -> Strategy | None:
        cls = find_type(
            self.strategy_types, spec.type, path, "strategy", self.doc.positions, self.problem
        )
        if cls is None:
            return None
        return build(
            cls, spec.options, path, f"strategy {spec.type!r}", self.problem, self.validate
        )

    def guardrails(
        self, specs: list[GuardrailSpec], path: JSONPath
    ) -> tuple[CompiledGuardrail, ...] | None:
        out: list[CompiledGuardrail] = []
        names: set[str] = set()
        for i, spec in enumerate(specs):
            where: JSONPath = (*path, i)
            cls = find_type(
                self.guardrail_types, spec.type, where, "guardrail", self.doc.positions,
                self.problem,
            )  # fmt: skip
            if cls is None:
                continue
            action = spec.action or cls.default_action
            name = spec.name or spec.type
            if action not in cls.actions:
                self.problem(
                    (*where, "action"),
                    f"guardrail {spec.type!r} cannot {action}",
                    f"use one of {', '.join(cls.actions)}",
                )
            elif name in names:
                self.problem(
                    where,
                    f"guardrail {name!r} is listed twice",
                    "give one of them a distinct name:",
                )
            else:
                names.add(name)
                label = f"guardrail {spec.type!r}"
                instance = build(cls, spec.options, where, label, self.problem, self.validate)
                if instance is not None:
                    out.append(CompiledGuardrail(name, instance, spec.on or cls.default_on, action))
        return tuple(out) if len(out) == len(specs) else None

    def check_missing_env(self) -> None:
        for path, var in self.doc.missing_env.items():
            if len(path) >= 3 and path[0] == "providers" and path[2] in ("api_key", "api_keys"):
                continue
            self.problem(
                path,
                f"environment variable {var} is not set",
                f"export {var}, or give a default: ${{{var}:-value}}",
            )


def compile_policy(
    doc: Document,
    provider_types: Mapping[str, type[Provider]],
    strategy_types: Mapping[str, type[Strategy]] | None = None,
    guardrail_types: Mapping[str, type[Guardrail]] | None = None,
) -> RoutingTable:
    """Validate and compile ``doc``; raise PolicyError listing every problem.

    ``strategy_types`` defaults to the engine's own ``weighted`` only;
    ``guardrail_types`` to none.
    """
    return _Compiler(
        doc, provider_types, strategy_types or {"weighted": Weighted}, guardrail_types or {}
    ).run()


def _cache(default: CacheConfig | None, route: CacheConfig | None) -> CacheConfig | None:
    """A route's cache settings over the policy's defaults; None when caching is off."""
    if route is None:
        merged = default
    elif default is None:
        merged = route
    else:
        merged = default.model_copy(
            update={name: getattr(route, name) for name in route.model_fields_set}
        )
    return merged if merged is not None and merged.enabled else None
