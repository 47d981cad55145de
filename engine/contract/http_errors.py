"""Failure classification for providers that speak HTTP.

Turns what an upstream said (status, headers, an error body, or an
``UpstreamError``) into one ``ProviderError`` with the right ``FailureClass``.
Error bodies are read in the shape most vendors share, ``{"error": {"message",
"type", "code"}}``, plus vLLM's older top-level ``{"object": "error", ...}``.

Messages come from the upstream's own ``error.message``, never from the
request; the API key is masked out of them in case an upstream echoes it.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from turnout.errors import FailureClass, ProviderError
from turnout.upstream.interface import UpstreamError

__all__ = [
    "classify_error",
    "clean",
    "error_from_payload",
    "error_from_response",
    "error_from_transport",
    "error_object",
    "parse_retry_after",
]

_MAX_MESSAGE = 500
_MIN_SECRET = 8  # shorter "keys" (Ollama's "ollama") are placeholders, not secrets

# error.code values that say more than the HTTP status does.
_CODE_CLASS: dict[str, FailureClass] = {
    "context_length_exceeded": FailureClass.CONTEXT_LENGTH,
    "content_filter": FailureClass.CONTENT_FILTER,
    "content_policy_violation": FailureClass.CONTENT_FILTER,
    # Out of credit: waiting will not help and this key is unusable until
    # someone pays, so it is treated like a bad key (fall back, no retry).
    "insufficient_quota": FailureClass.AUTH,
    "invalid_api_key": FailureClass.AUTH,
    "rate_limit_exceeded": FailureClass.RATE_LIMITED,
}

# error.type values that say more than the HTTP status does.
_REFINING_TYPE_CLASS: dict[str, FailureClass] = {
    "exceed_context_size_error": FailureClass.CONTEXT_LENGTH,  # llama.cpp server
    "insufficient_quota": FailureClass.AUTH,
}

# error.type values, used only when there is no HTTP status to go by
# (an error in a 200 body or in the middle of a stream).
_TYPE_CLASS: dict[str, FailureClass] = {
    "invalid_request_error": FailureClass.BAD_REQUEST,
    "authentication_error": FailureClass.AUTH,
    "permission_error": FailureClass.AUTH,
    "rate_limit_error": FailureClass.RATE_LIMITED,
    "tokens": FailureClass.RATE_LIMITED,
    "requests": FailureClass.RATE_LIMITED,
    "overloaded_error": FailureClass.OVERLOADED,
    "timeout_error": FailureClass.TIMEOUT,
    "server_error": FailureClass.SERVER_ERROR,
    "api_error": FailureClass.SERVER_ERROR,
}

# How OpenAI-compatible servers without a code phrase a too-long prompt (vLLM, TGI, ...).
_CONTEXT_PHRASES = ("maximum context length", "context length", "context window")


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asked us to wait, or None if it did not say (or said nonsense).

    Reads ``retry-after-ms`` first (OpenAI), then ``Retry-After`` as seconds
    or as an HTTP-date (RFC 9110). A date in the past means 0.

    :param headers: the response headers (case-insensitive mapping).
    :param now: the current Unix time, for dates; defaults to the clock.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = _non_negative(millis)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        parts = email.utils.parsedate_tz(value)
        if parts is None:
            return None
        when = email.utils.mktime_tz(parts)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _non_negative(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def classify_error(status: int | None, error: Mapping[str, Any]) -> FailureClass:
    """The failure class of an upstream error object, given the HTTP status if any.

    ``error.code`` and a few ``error.type`` values override the status (a 400
    with ``context_length_exceeded`` is CONTEXT_LENGTH, not BAD_REQUEST);
    otherwise the status decides. Without a status (an error inside a 200 body
    or a stream), a numeric ``error.code`` is read as a status, then
    ``error.type``; anything unrecognised is SERVER_ERROR.
    """
    code = error.get("code")
    kind = error.get("type")
    if isinstance(code, str) and code in _CODE_CLASS:
        return _CODE_CLASS[code]
    if isinstance(kind, str) and kind in _REFINING_TYPE_CLASS:
        return _REFINING_TYPE_CLASS[kind]
    if status is None:
        if isinstance(code, str) and code.isascii() and code.isdigit():
            code = int(code)
        if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
            status = code
        elif isinstance(kind, str) and kind in _TYPE_CLASS:
            failure = _TYPE_CLASS[kind]
            return _refine_bad_request(failure, error)
        else:
            return FailureClass.SERVER_ERROR
    return _refine_bad_request(FailureClass.from_status(status), error)


def _refine_bad_request(failure: FailureClass, error: Mapping[str, Any]) -> FailureClass:
    if failure is not FailureClass.BAD_REQUEST:
        return failure
    message = error.get("message")
    if isinstance(message, str):
        lowered = message.lower()
        if any(phrase in lowered for phrase in _CONTEXT_PHRASES):
            return FailureClass.CONTEXT_LENGTH
    return failure


def error_object(payload: Any) -> Mapping[str, Any] | None:
    """The error object in a decoded body, or None if the body is not an error."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str) and error:
        return {"message": error}
    if payload.get("object") == "error" and "message" in payload:
        return payload  # vLLM before it adopted the nested shape
    return None


def error_from_payload(
    error: Mapping[str, Any],
    *,
    status: int | None = None,
    retry_after: float | None = None,
    secret: str | None = None,
) -> ProviderError:
    """A ``ProviderError`` for an upstream error object (see ``error_object``)."""
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = f"upstream error (HTTP {status})" if status else "upstream error"
    code = error.get("code")
    return ProviderError(
        classify_error(status, error),
        clean(message, secret),
        status_code=status,
        retry_after=retry_after,
        code=code if isinstance(code, str) and code else None,
    )


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str = "",
    secret: str | None = None,
) -> ProviderError:
    """A ``ProviderError`` for a non-2xx upstream response, read fully.

    :param status: the HTTP status.
    :param headers: the response headers, for ``Retry-After`` and redirects.
    :param body: the response body; used only if it is an error object.
    :param reason: the HTTP reason phrase, for bodies that explain nothing.
    :param secret: the API key used, masked out of the message.
    """
    retry_after = parse_retry_after(headers)
    try:
        error = error_object(json.loads(body)) if body else None
    except ValueError:
        error = None
    if error is not None:
        return error_from_payload(error, status=status, retry_after=retry_after, secret=secret)
    message = f"upstream returned HTTP {status} {reason}".rstrip()
    if 300 <= status < 400 and "location" in headers:
        message += f" (redirect to {headers['location']}; point base_url there)"
    return ProviderError(
        FailureClass.from_status(status),
        clean(message, secret),
        status_code=status,
        retry_after=retry_after,
    )


def error_from_transport(exc: UpstreamError, *, secret: str | None = None) -> ProviderError:
    """A ``ProviderError`` for a request that got no HTTP answer (or a broken one)."""
    detail = clean(exc.detail, secret)
    if exc.failure is FailureClass.TIMEOUT:
        return ProviderError(FailureClass.TIMEOUT, f"upstream timed out ({detail})")
    return ProviderError(exc.failure, f"upstream connection failed ({detail})")


def clean(message: str, *secrets: str | None) -> str:
    """``message`` with each secret masked (``***``) and its length capped."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            message = message.replace(secret, "***")
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return message
