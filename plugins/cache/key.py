"""The exact-match cache key: a canonical form of what decides a response.

A key is ``<prefix>:<route>:<caller>:<sha256 of the canonical request>``. The
canonical request is JSON with sorted keys and normalised numbers (``1.0`` and
``1`` are one value; ``0.70`` and ``7e-1`` are one value), holding:

- the model as the route resolves it: on a named route the route's name and
  its target and fallback models in file order — a route's answer may come
  from any of its targets, so the route is the model, and editing its targets
  starts a fresh cache; on the implicit direct route the ``provider/model``
  the request named;
- messages, tools, tool_choice, parallel_tool_calls, response_format, the
  sampling parameters (temperature, top_p, n, seed, stop, penalties,
  logit_bias, logprobs, top_logprobs, max_tokens, max_completion_tokens) and
  any vendor parameter the caller passed through;
- never the request id, ``user``, ``metadata``, ``stream`` / ``stream_options``
  (a streamed and a plain request share entries) or the per-request ``cache``
  control.

The namespace (route, caller) is part of the key, so one tenant never reads
another's entry (``cache_namespace``): with gateway API keys on (``keys:``),
the caller is the authenticated key, unless the policy says ``per_caller:
false`` in so many words (a cache shared by every key); without keys,
``per_caller: true`` hashes the ``caller_header`` (by default the
``Authorization`` header, or ``x-api-key`` when that is what was sent).

A number JSON cannot hold (``1e999`` parses as infinity) is a 400 naming the
field, not a failed key. ``canonical_request`` is public so that another cache plugin
(a semantic one, say, that embeds the messages) can reuse the same notion of
"the same request" for its exact-match fallback.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from turnout.plugin_api import ChatRequest, TurnoutError

if TYPE_CHECKING:
    from turnout.plugin_api import CacheConfig, CompiledRoute, RequestContext

__all__ = [
    "CALLER_SCRATCH_KEY",
    "EXCLUDED_FIELDS",
    "cache_key",
    "cache_namespace",
    "caller_id",
    "canonical_json",
    "canonical_request",
    "resolved_model",
]

EXCLUDED_FIELDS = frozenset(
    {"model", "user", "metadata", "stream", "stream_options", "fallbacks", "cache"}
)
"""Request fields that never change the answer (or are turnout's own)."""

CALLER_SCRATCH_KEY = "caller_id"
"""The hook point for caller identity: an authentication plugin that knows who
is calling (the gateway's API keys) sets ``ctx.scratch["caller_id"]`` in its
``turnout_pre_request`` (``tryfirst``); the cache then namespaces by it.
Without it the cache hashes the route's ``caller_header`` (``authorization``)."""

ANONYMOUS = "-"


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """JSON that is the same for equal values: sorted keys, normalised numbers."""
    return json.dumps(
        _normal(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def resolved_model(route: CompiledRoute, request: ChatRequest) -> str:
    """The model a request goes to, as far as the cache is concerned."""
    if route.direct:
        return request.model
    names = [t.name for t in route.targets]
    if route.fallbacks:
        names += ["|", *(t.name for t in route.fallbacks)]
    return f"{route.name}={','.join(names)}"


def canonical_request(request: ChatRequest, model: str) -> str:
    """The canonical JSON of a request's semantic fields, for ``model``.

    Raises TurnoutError 400 for a number JSON cannot hold (infinity, NaN)."""
    body = request.model_dump(exclude_none=True, exclude=EXCLUDED_FIELDS)
    body["model"] = model
    try:
        return canonical_json(body)
    except ValueError:
        raise TurnoutError(
            f"{_not_finite(body) or 'a field'} holds a number out of range (such as 1e999): "
            "send a finite number",
            status_code=400,
            code="invalid_number",
            param=_not_finite(body),
        ) from None


def _not_finite(value: Any, path: str = "") -> str | None:
    """The path of the first infinite or NaN number in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
        found = _not_finite(item, here)
        if found:
            return found
    return None


def caller_id(ctx: RequestContext, header: str) -> str:
    """Who is calling: what an auth plugin put in scratch, else a hash of ``header``
    (for the default ``authorization``, of ``x-api-key`` when that is what came)."""
    known = ctx.scratch.get(CALLER_SCRATCH_KEY)
    if known:
        return str(known)
    value = ctx.headers.get(header)
    if not value and header == "authorization":
        value = ctx.headers.get("x-api-key")
    if not value:
        return ANONYMOUS
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def cache_namespace(ctx: RequestContext, config: CacheConfig) -> str:
    """The caller part of a route's cache keys.

    With gateway keys on, the authenticated key's name, unless the policy set
    ``per_caller: false`` itself (then one namespace, shared by every key).
    """
    key = ctx.key
    if key is not None:
        if "per_caller" in config.model_fields_set and not config.per_caller:
            return ANONYMOUS
        return "key." + hashlib.sha256(key.name.encode()).hexdigest()[:24]
    return caller_id(ctx, config.caller_header) if config.per_caller else ANONYMOUS


def cache_key(
    request: ChatRequest, route: CompiledRoute, *, prefix: str, caller: str = ANONYMOUS
) -> str:
    """``<prefix>:<route>:<caller>:<digest>``."""
    digest = hashlib.sha256(
        canonical_request(request, resolved_model(route, request)).encode()
    ).hexdigest()
    return f"{prefix}:{route.name}:{caller}:{digest}"
