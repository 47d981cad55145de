"""OpenAI's embeddings wire format (``POST /v1/embeddings``), as the fake sends it.

The request is checked as api.openai.com checks it: ``model`` and ``input``
required; ``input`` a non-empty string, a list of up to 2048 non-empty
strings, a token array or a list of token arrays; ``encoding_format``
``float`` or ``base64`` (little-endian float32); ``dimensions`` only for the
``text-embedding-3`` models, at most their native size; any other field is
refused as an unrecognized argument. Each vector is derived from a hash of its
input, so the same input always embeds the same.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from typing import Any

from tests.fakes.openai_wire import error_object

__all__ = ["NATIVE_DIMENSIONS", "embed", "embeddings_answer", "validate_embeddings_request"]

NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_MAX_INPUTS = 2048


def _invalid(message: str, param: str) -> dict[str, Any]:
    return error_object(400, message, param, "invalid_value")


def _token_array(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def _inputs(value: Any) -> list[str] | list[list[int]] | None:
    if isinstance(value, str):
        return [value] if value else None
    if _token_array(value):
        return [value]
    if not isinstance(value, list) or not value or len(value) > _MAX_INPUTS:
        return None
    if all(isinstance(v, str) and v for v in value):
        return value
    if all(_token_array(v) for v in value):
        return value
    return None


def validate_embeddings_request(body: Any) -> dict[str, Any] | None:
    """None when ``body`` is a request api.openai.com would take, else its 400 error."""
    if not isinstance(body, dict):
        return error_object(400, "The request body must be a JSON object.")
    for name in ("model", "input"):
        if name not in body:
            return error_object(
                400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
            )
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return error_object(
            400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0]
        )
    if not isinstance(body["model"], str):
        return error_object(400, "Invalid type for 'model': expected a string.", "model")
    if _inputs(body["input"]) is None:
        return _invalid("'$.input' is invalid. Please check the API reference.", "input")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return _invalid("Invalid value for 'encoding_format'.", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None:
        native = NATIVE_DIMENSIONS.get(body["model"])
        if not body["model"].startswith("text-embedding-3") or native is None:
            return _invalid("This model does not support specifying dimensions.", "dimensions")
        if not isinstance(dimensions, int) or not 1 <= dimensions <= native:
            return _invalid(f"'dimensions' must be between 1 and {native}.", "dimensions")
    return None


def embed(item: str | list[int], size: int) -> list[float]:
    """The fake's unit vector for one input."""
    seed = item.encode() if isinstance(item, str) else json.dumps(item).encode()
    raw = b""
    counter = 0
    while len(raw) < size:
        raw += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    values = [b / 127.5 - 1.0 for b in raw[:size]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embeddings_answer(body: dict[str, Any]) -> bytes:
    """The 200 body for a valid request (``validate_embeddings_request`` passed)."""
    inputs = _inputs(body["input"]) or []
    model = body["model"]
    size = body.get("dimensions") or NATIVE_DIMENSIONS.get(model, 1536)
    base64_wanted = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        vector = embed(item, size)
        tokens += len(item) if isinstance(item, list) else len(item.split())
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            if base64_wanted
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(answer, separators=(",", ":")).encode()
