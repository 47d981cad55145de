"""Calling request hooks that may be async, in pluggy's order.

pluggy calls implementations synchronously; an ``async def`` implementation
returns a coroutine, which the engine awaits before calling the next one, so
order (``tryfirst`` / ``trylast``) and short-circuits hold for async plugins.
As with pluggy, an implementation may take any subset of the hook's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import CoroutineType
from typing import Any, cast

import pluggy
import structlog
from turnout.contract.route_hooks import SelectedHook

__all__ = ["call_chain", "call_first", "call_observers", "has_impls", "upstream_headers"]

log = structlog.get_logger("turnout.hooks")


Hook = pluggy.HookCaller | SelectedHook
"""``plugin_manager.hook.<name>``, or the implementations one route calls."""


def has_impls(hook: Hook) -> bool:
    if type(hook) is SelectedHook:
        return bool(hook.calls)
    return bool(hook.get_hookimpls())


def _in_order(hook: Hook) -> Any:
    if type(hook) is SelectedHook:
        return hook.calls
    return reversed(hook.get_hookimpls())


async def call_first(hook: Hook, **kwargs: Any) -> Any:
    """The first non-None result; later implementations are not called."""
    for impl in _in_order(hook):
        result = impl.function(*[kwargs[name] for name in impl.argnames])
        if result is None:
            continue
        if type(result) is CoroutineType or inspect.isawaitable(result):
            result = await result
        if result is not None:
            return result
    return None


async def call_chain(hook: Hook, value_arg: str, value: Any, **kwargs: Any) -> Any:
    """Pass ``value`` through every implementation; a non-None result replaces it."""
    for impl in _in_order(hook):
        kwargs[value_arg] = value
        result = impl.function(*[kwargs[name] for name in impl.argnames])
        if result is None:
            continue
        if type(result) is CoroutineType or inspect.isawaitable(result):
            result = await result
        if result is not None:
            value = result
    return value


async def call_observers(hook: Hook, **kwargs: Any) -> None:
    """Call every implementation; an observer that fails is logged, never raised."""
    for impl in _in_order(hook):
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
            if result is not None and (
                type(result) is CoroutineType or inspect.isawaitable(result)
            ):
                await result
        except Exception:
            log.exception("observer hook failed", hook=hook.name, plugin=impl.plugin_name)


def upstream_headers(hook: Hook, ctx: Any, attempt: Any) -> dict[str, str]:
    """The merged headers of every ``turnout_upstream_headers`` implementation
    (sync, in pluggy's order, a later one's winning); one that fails is logged
    and adds nothing, as an observer would."""
    merged: dict[str, str] = {}
    kwargs = {"ctx": ctx, "attempt": attempt}
    for impl in _in_order(hook):
        try:
            result = cast(
                "Mapping[str, str] | None", impl.function(*[kwargs[name] for name in impl.argnames])
            )
        except Exception:
            log.exception("observer hook failed", hook=hook.name, plugin=impl.plugin_name)
            continue
        if result:
            merged.update(result)
    return merged
