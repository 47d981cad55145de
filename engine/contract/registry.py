"""Building the plugin manager and collecting what plugins register."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, cast

import pluggy
from turnout.contract import hookspecs
from turnout.contract.calls import call_observers
from turnout.contract.guardrail import Guardrail
from turnout.contract.provider import Provider
from turnout.contract.route_hooks import REQUEST_HOOKS, TrackingPluginManager
from turnout.contract.strategy import Strategy, Weighted

__all__ = [
    "DEFAULT_PLUGINS",
    "PluginError",
    "Registry",
    "close_plugins",
    "collect_guardrail_types",
    "collect_provider_types",
    "collect_registry",
    "collect_strategy_types",
    "make_plugin_manager",
    "start_plugins",
]

DEFAULT_PLUGINS = (
    "turnout.plugins.providers.mock",
    "turnout.plugins.providers.openai",
    "turnout.plugins.providers.anthropic",
    "turnout.plugins.providers.gemini",
    "turnout.plugins.providers.cohere",
    "turnout.plugins.providers.azure",
    "turnout.plugins.providers.presets",
    "turnout.plugins.providers.bedrock",
    "turnout.plugins.strategies",
    "turnout.plugins.guardrails.plugin",
    "turnout.plugins.cache.plugin",
    "turnout.plugins.metrics",
    "turnout.plugins.logging",
    "turnout.plugins.tracing",
)
"""Built-in plugins: ordinary plugin modules, loaded like any other."""

ENTRY_POINT_GROUP = "turnout"
DISABLE_AUTOLOAD_ENV = "TURNOUT_DISABLE_PLUGIN_AUTOLOAD"

_REQUEST_HOOKS = REQUEST_HOOKS


class PluginError(Exception):
    """A plugin that cannot be loaded or registers something invalid; names the plugin."""


def make_plugin_manager(
    plugins: Iterable[Any] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """A new plugin manager with the built-ins, installed plugins and ``plugins``.

    It counts registrations, so the hooks each route calls are selected again
    when a plugin is registered or unregistered later
    (``turnout.contract.route_hooks``).

    :param autoload: load ``turnout`` entry points; defaults to on unless
        ``TURNOUT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    """
    pm = TrackingPluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            pm.register(plugin, name=ep.name)
    for plugin in plugins:
        if not pm.is_registered(plugin):  # a built-in named again is harmless
            pm.register(plugin, name=_plugin_name(pm, plugin))
    check_request_hooks(pm)
    return pm


def _plugin_name(pm: pluggy.PluginManager, plugin: Any) -> str:
    """A readable, unique name for a plugin object (a module or an instance)."""
    base = getattr(plugin, "__name__", None) or (
        f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    )
    name, n = base, 1
    while pm.has_plugin(name):
        n += 1
        name = f"{base}#{n}"
    return name


def check_request_hooks(pm: pluggy.PluginManager) -> None:
    """Request hooks are awaited one by one by the engine: wrappers cannot apply."""
    for hook_name in _REQUEST_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook_name} cannot be a wrapper; "
                    "use tryfirst/trylast to order it"
                )


def start_plugins(pm: pluggy.PluginManager, metrics: Any) -> None:
    """Call every ``turnout_engine_started`` once; a failure names its plugin.

    Per-engine objects the plugins register there are checked like the others.
    """
    for impl in reversed(pm.hook.turnout_engine_started.get_hookimpls()):
        given = {"plugin_manager": pm, "metrics": metrics}
        try:
            impl.function(*[given[name] for name in impl.argnames])
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} failed to start: {exc}") from exc
    check_request_hooks(pm)


async def close_plugins(pm: pluggy.PluginManager) -> None:
    """Call every ``turnout_engine_closed`` once; failures are logged, never raised."""
    await call_observers(pm.hook.turnout_engine_closed)


def _collect(
    pm: pluggy.PluginManager, hook_name: str, base: type, what: str, seed: dict[str, type]
) -> dict[str, type]:
    """Call every implementation of a registration hook; validate and de-duplicate."""
    types: dict[str, type] = dict(seed)
    owners: dict[str, str] = dict.fromkeys(seed, "turnout's engine")
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        plugin_name = impl.plugin_name

        def register(name: str, cls: type, _plugin: str = plugin_name) -> None:
            if not isinstance(name, str) or not name or "/" in name:
                raise PluginError(f"plugin {_plugin!r} registered an invalid {what} name {name!r}")
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"plugin {_plugin!r} registered {name!r} with {cls!r}, "
                    f"not a {base.__name__} subclass"
                )
            if name in types and types[name] is not cls:
                raise PluginError(
                    f"{what} {name!r} is registered by both {owners[name]!r} and {_plugin!r}"
                )
            types[name] = cls
            owners[name] = _plugin

        impl.function(*[{"register": register}[name] for name in impl.argnames])
    return types


@dataclass(frozen=True)
class Registry:
    """What the plugins registered: provider types, strategies and guardrails, by name."""

    providers: Mapping[str, type[Provider]]
    strategies: Mapping[str, type[Strategy]]
    guardrails: Mapping[str, type[Guardrail]] = field(default_factory=dict)


def collect_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook once."""
    return Registry(
        collect_provider_types(pm), collect_strategy_types(pm), collect_guardrail_types(pm)
    )


def collect_provider_types(pm: pluggy.PluginManager) -> dict[str, type[Provider]]:
    """Call every ``turnout_register_providers``; validate and de-duplicate."""
    return cast(
        dict[str, type[Provider]],
        _collect(pm, "turnout_register_providers", Provider, "provider type", {}),
    )


def collect_strategy_types(pm: pluggy.PluginManager) -> dict[str, type[Strategy]]:
    """Call every ``turnout_register_strategies``; ``weighted`` is always there."""
    return cast(
        dict[str, type[Strategy]],
        _collect(pm, "turnout_register_strategies", Strategy, "strategy", {"weighted": Weighted}),
    )


def collect_guardrail_types(pm: pluggy.PluginManager) -> dict[str, type[Guardrail]]:
    """Call every ``turnout_register_guardrails``; validate and de-duplicate."""
    return cast(
        dict[str, type[Guardrail]],
        _collect(pm, "turnout_register_guardrails", Guardrail, "guardrail", {}),
    )
