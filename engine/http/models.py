"""``GET /v1/models``: the route aliases and provider models a policy exposes."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from turnout.http.wire import json_bytes
from turnout.policy.table import RoutingTable

__all__ = ["model_list"]

_cache: WeakKeyDictionary[RoutingTable, bytes] = WeakKeyDictionary()


def _entry(name: str, owner: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner, "kind": kind, **extra}


def build_model_list(table: RoutingTable) -> dict[str, Any]:
    """OpenAI's model list: every exact route alias (``owned_by: turnout``), then
    every ``provider/model`` the policy names, with whether its provider is enabled.

    Glob patterns (``premium-*``) are not listed: they name no model.
    """
    seen: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        patterns = route.matcher.model
        if patterns is None:
            continue
        for alias in sorted(patterns.exact):
            seen.setdefault(alias, _entry(alias, "turnout", "route", route=route.name))
    names = [t.name for r in table.routes for t in (*r.targets, *r.fallbacks)]
    names += list(table.policy.models)
    for name in names:
        if name in seen:
            continue
        provider_name = name.partition("/")[0]
        provider = table.providers.get(provider_name)
        if provider is None:
            continue
        seen[name] = _entry(name, provider_name, "model", available=provider.disabled is None)
    return {"object": "list", "data": list(seen.values())}


def model_list(table: RoutingTable) -> bytes:
    """``build_model_list`` as JSON bytes, built once per policy snapshot."""
    body = _cache.get(table)
    if body is None:
        body = _cache[table] = json_bytes(build_model_list(table))
    return body
