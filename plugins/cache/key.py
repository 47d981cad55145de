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
another's entry. ``canonical_request`` is public so that another cache plugin
(a semantic one, say, that embeds the messages) can reuse the same notion of
"the same request" for its exact-match fallback.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from turnout.plugin_api import ChatRequest

if TYPE_CHECKING:
    from turnout.plugin_api import CompiledRoute, RequestContext

__all__ = [
    "CALLER_SCRATCH_KEY",
    "EXCLUDED_FIELDS",
    "cache_key",
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
    """The canonical JSON of a request's semantic fields, for ``model``."""
    body = request.model_dump(exclude_none=True, exclude=EXCLUDED_FIELDS)
    body["model"] = model
    return canonical_json(body)


def caller_id(ctx: RequestContext, header: str) -> str:
    """Who is calling: what an auth plugin put in scratch, else a hash of ``header``."""
    known = ctx.scratch.get(CALLER_SCRATCH_KEY)
    if known:
        return str(known)
    value = ctx.headers.get(header)
    if not value:
        return ANONYMOUS
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def cache_key(
    request: ChatRequest, route: CompiledRoute, *, prefix: str, caller: str = ANONYMOUS
) -> str:
    """``<prefix>:<route>:<caller>:<digest>``."""
    digest = hashlib.sha256(
        canonical_request(request, resolved_model(route, request)).encode()
    ).hexdigest()
    return f"{prefix}:{route.name}:{caller}:{digest}"
