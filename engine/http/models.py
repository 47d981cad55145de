"""``GET /v1/models``: the route aliases and provider models a policy exposes."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from turnout.http.wire import json_bytes
from turnout.policy.limits import ApiKeyInfo
from turnout.policy.table import RoutingTable

__all__ = ["model_list"]

_cache: WeakKeyDictionary[RoutingTable, bytes] = WeakKeyDictionary()


def _entry(name: str, owner: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner, "kind": kind, **extra}


def build_model_list(table: RoutingTable, key: ApiKeyInfo | None = None) -> dict[str, Any]:
    """OpenAI's model list: every exact route alias (``owned_by: turnout``), then
    every ``provider/model`` the policy names, with whether its provider is enabled.
    With ``key`` (``keys:`` on), only what that key may use: the aliases of routes
    it may use, and the targets of those routes it may name.

    Glob patterns (``premium-*``) are not listed: they name no model.
    """
    out = _all_models(table)
    if key is None:
        return out
    serving: dict[str, list[str]] = {}
    for route in table.routes:
        for target in (*route.targets, *route.fallbacks):
            serving.setdefault(target.name, []).append(route.name)
    data = [
        entry
        for entry in out["data"]
        if (entry.get("route") and key.allows(entry["route"], entry["id"]))
        or any(key.allows(name, entry["id"]) for name in serving.get(entry["id"], ()))
    ]
    return {"object": "list", "data": data}


def _all_models(table: RoutingTable) -> dict[str, Any]:
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


def model_list(table: RoutingTable, key: ApiKeyInfo | None = None) -> bytes:
    """``build_model_list`` as JSON bytes, built once per policy snapshot (per
    call for a key's own list)."""
    if key is not None:
        return json_bytes(build_model_list(table, key))
    body = _cache.get(table)
    if body is None:
        body = _cache[table] = json_bytes(build_model_list(table))
    return body
