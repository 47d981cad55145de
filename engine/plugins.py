"""Building the plugin manager and collecting what plugins register."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .provider import Provider

__all__ = ["DEFAULT_PLUGINS", "PluginError", "collect_provider_types", "make_plugin_manager"]

DEFAULT_PLUGINS = (
    "plugins.providers.mock",
    "plugins.providers.openai",
    "plugins.metrics",
    "plugins.logging",
)
"""Built-in plugins: ordinary plugin modules, loaded like any other."""

ENTRY_POINT_GROUP = "turnout"
DISABLE_AUTOLOAD_ENV = "TURNOUT_DISABLE_PLUGIN_AUTOLOAD"

_REQUEST_HOOKS = (
    "turnout_pre_request",
    "turnout_post_response",
    "turnout_stream_chunk",
    "turnout_on_error",
    "turnout_request_finished",
)


class PluginError(Exception):
    """A plugin that cannot be loaded or registers something invalid; names the plugin."""


def make_plugin_manager(
    plugins: Iterable[Any] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """A new plugin manager with the built-ins, installed plugins and ``plugins``.

    :param autoload: load ``turnout`` entry points; defaults to on unless
        ``TURNOUT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
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


def collect_provider_types(pm: pluggy.PluginManager) -> dict[str, type[Provider]]:
    """Call every ``turnout_register_providers``; validate and de-duplicate."""
    types: dict[str, type[Provider]] = {}
    owners: dict[str, str] = {}
    for impl in reversed(pm.hook.turnout_register_providers.get_hookimpls()):
        plugin_name = impl.plugin_name

        def register(type_name: str, cls: type[Provider], _plugin: str = plugin_name) -> None:
            if not isinstance(type_name, str) or not type_name or "/" in type_name:
                raise PluginError(
                    f"plugin {_plugin!r} registered an invalid provider type name {type_name!r}"
                )
            if not (isinstance(cls, type) and issubclass(cls, Provider)):
                raise PluginError(
                    f"plugin {_plugin!r} registered {type_name!r} with {cls!r}, "
                    "not a Provider subclass"
                )
            if type_name in types and types[type_name] is not cls:
                raise PluginError(
                    f"provider type {type_name!r} is registered by both "
                    f"{owners[type_name]!r} and {_plugin!r}"
                )
            types[type_name] = cls
            owners[type_name] = _plugin

        impl.function(*[{"register": register}[name] for name in impl.argnames])
    return types
