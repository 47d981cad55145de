"""Which request hook implementations a route calls, decided once per route.

A hook implementation marked with ``@for_routes(applies)`` is called only for
the routes ``applies(route)`` accepts (the cache's hooks only where a route
turns the cache on, the guardrails' only where it lists guardrails); an
unmarked one is called for every route, as any plugin that does not say
otherwise may apply everywhere. The selection is made per compiled route when
the engine starts and after each reload, and again whenever a plugin is
registered or unregistered, so nothing is decided per request.

``RouteHooks`` has one attribute per request hook, named like the attributes
of ``plugin_manager.hook``, so the call helpers of ``turnout.contract.calls``
and an ``Operation``'s ``accept`` / ``relay`` take either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from turnout.policy.table import CompiledRoute, RoutingTable

__all__ = [
    "REQUEST_HOOKS",
    "ROUTE_FILTER",
    "HookSelection",
    "RouteHooks",
    "SelectedHook",
    "TrackingPluginManager",
    "for_routes",
]

F = TypeVar("F", bound=Callable[..., Any])

ROUTE_FILTER = "turnout_for_routes"
"""The attribute ``for_routes`` sets on a hook implementation."""

REQUEST_HOOKS = (
    "turnout_pre_request",
    "turnout_post_response",
    "turnout_stream_chunk",
    "turnout_on_error",
    "turnout_upstream_headers",
    "turnout_request_finished",
    "turnout_shadow_finished",
)


def for_routes(applies: Callable[[CompiledRoute], bool]) -> Callable[[F], F]:
    """Call the marked request hook implementation only for routes ``applies`` accepts.

    ``applies`` gets a compiled route (``turnout.plugin_api.CompiledRoute``) when
    the policy is compiled or the plugins change, never per request; it must be
    pure. Stack it with ``@hookimpl`` in either order::

        @hookimpl
        @for_routes(lambda route: route.cache is not None)
        async def turnout_pre_request(self, ctx): ...
    """

    def mark(function: F) -> F:
        setattr(function, ROUTE_FILTER, applies)
        return function

    return mark


class SelectedHook:
    """One hook's implementations for one route, in pluggy's order (the call
    helpers walk ``calls``: last registered / ``tryfirst`` first)."""

    __slots__ = ("calls", "impls", "name")

    def __init__(self, name: str, impls: list[pluggy.HookImpl]) -> None:
        self.name = name
        self.impls = impls
        self.calls = tuple(reversed(impls))

    def get_hookimpls(self) -> list[pluggy.HookImpl]:
        return list(self.impls)

    def __repr__(self) -> str:
        return f"<SelectedHook {self.name}: {[impl.plugin_name for impl in self.impls]}>"


class RouteHooks:
    """The request hooks one route calls, selected from one plugin manager state."""

    __slots__ = ("generation", "pm", *REQUEST_HOOKS)

    turnout_pre_request: SelectedHook
    turnout_post_response: SelectedHook
    turnout_stream_chunk: SelectedHook
    turnout_on_error: SelectedHook
    turnout_upstream_headers: SelectedHook
    turnout_request_finished: SelectedHook
    turnout_shadow_finished: SelectedHook

    def __init__(self, pm: pluggy.PluginManager, generation: int, route: CompiledRoute) -> None:
        self.pm = pm
        self.generation = generation
        for name in REQUEST_HOOKS:
            impls = [
                impl for impl in getattr(pm.hook, name).get_hookimpls() if _applies(impl, route)
            ]
            setattr(self, name, SelectedHook(name, impls))

    def plugins(self) -> dict[str, list[str]]:
        """Hook name -> the plugins this route calls it on, in call order."""
        return {
            name: [impl.plugin_name for impl in getattr(self, name).calls] for name in REQUEST_HOOKS
        }


def _applies(impl: pluggy.HookImpl, route: CompiledRoute) -> bool:
    applies = getattr(impl.function, ROUTE_FILTER, None)
    return applies is None or bool(applies(route))


class TrackingPluginManager(pluggy.PluginManager):
    """A plugin manager that counts registrations, so selections know when they are stale."""

    generation = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self.generation += 1

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self.generation += 1


class HookSelection:
    """Per engine: the ``RouteHooks`` of a route, kept on the compiled route.

    With a plugin manager that does not count registrations (not built by
    ``make_plugin_manager``), every route calls every implementation, through
    ``pm.hook`` itself."""

    __slots__ = ("pm", "tracked")

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.tracked = pm if isinstance(pm, TrackingPluginManager) else None

    def of(self, route: CompiledRoute) -> Any:
        """The hooks ``route`` calls (``RouteHooks``, or ``pm.hook`` untracked)."""
        pm = self.tracked
        if pm is None:
            return self.pm.hook
        hooks = route.hooks
        if hooks is None or hooks.pm is not pm or hooks.generation != pm.generation:
            hooks = RouteHooks(pm, pm.generation, route)
            object.__setattr__(route, "hooks", hooks)
        return hooks

    def select(self, table: RoutingTable) -> None:
        """Select the hooks of every route of ``table`` now (start-up, reload)."""
        for route in table.routes:
            self.of(route)
        if table.direct_route is not None:
            self.of(table.direct_route)
