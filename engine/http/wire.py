"""The gateway's edge: request headers and body in, JSON and error bytes out.

Nothing here knows about routing. Errors are always ``TurnoutError``s
serialised with ``to_dict()``: the OpenAI ``error`` object plus
``status_code`` and ``extra_fields``, so the official SDKs raise the class
that matches the HTTP status.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic_core
from turnout.errors import TurnoutError
from turnout.http.asgi import Receive, Scope, Send
from turnout.policy.limits import CompiledLimits
from turnout.policy.models import Gateway
from turnout.run.deadline import Deadline

__all__ = [
    "JSON",
    "RawHeaders",
    "body_too_large",
    "explain_invalid_json",
    "header_dict",
    "internal_error",
    "json_bytes",
    "read_body",
    "read_request_body",
    "request_id",
    "require_key",
    "send_error",
    "send_json",
]

JSON = b"application/json"
MAX_REQUEST_ID = 128

RawHeaders = list[tuple[bytes, bytes]]


def json_bytes(value: Any) -> bytes:
    return pydantic_core.to_json(value)


def header_dict(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-cased; repeated ones joined with ``, ``."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def request_id(headers: Mapping[str, str], limits: CompiledLimits | None = None) -> str:
    """The caller's ``x-request-id`` if it sent a sensible one, else a new id.

    With ``keys:`` on, a caller's id is scoped to its key, ``<key name>:<id>``, so
    one tenant cannot write log lines, traces or answers under another's ids;
    a caller whose key is unknown gets a new id (its answer is a 401 anyway)."""
    given = headers.get("x-request-id")
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable() and given.isascii():
        keys = limits.keys if limits is not None else None
        if keys is None:
            return given
        try:
            return f"{keys.authenticate(headers).name}:{given}"
        except TurnoutError:
            pass
    return os.urandom(16).hex()  # 32 hex digits like uuid4().hex, at a fifth of its cost


def require_key(limits: CompiledLimits | None, headers: Mapping[str, str]) -> None:
    """With ``keys:`` on, TurnoutError 401 unless the headers carry a known key:
    called before the body is read, so an unauthenticated body is never parsed."""
    keys = limits.keys if limits is not None else None
    if keys is not None:
        keys.authenticate(headers)


def body_too_large(limit: int) -> TurnoutError:
    return TurnoutError(
        f"the request body is larger than the gateway's limit of {limit} bytes; "
        "send a smaller request or raise gateway.max_body in the policy",
        status_code=413,
        code="request_too_large",
    )


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole request body; TurnoutError 413 as soon as it passes ``limit``."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise TurnoutError(
                f"invalid Content-Length header {declared[:40]!r}", code="invalid_request"
            ) from None
        if length > limit:
            raise body_too_large(limit)
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise body_too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise TurnoutError(
                "the client went away before sending the whole body",
                status_code=499,
                code="client_closed_request",
            )
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def explain_invalid_json(body: bytes, error: TurnoutError) -> TurnoutError:
    """A clearer message for the commonest ways a body is not JSON (error path only)."""
    if error.code != "invalid_json":
        return error
    if not body.strip():
        error.message = (
            "the request body is empty; send a JSON chat-completion request "
            '({"model": ..., "messages": [...]})'
        )
    else:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            error.message = (
                f"the request body is not valid UTF-8 (byte {exc.start}); "
                "JSON bodies must be UTF-8 encoded"
            )
    return error


def internal_error(rid: str) -> TurnoutError:
    return TurnoutError(
        f"the gateway failed unexpectedly; its log has the details under request id {rid}",
        status_code=500,
        type="api_error",
        code="internal_error",
    )


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, error: TurnoutError, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_json(send, error.status_code, json_bytes(error.to_dict()), headers)


async def read_request_body(
    receive: Receive,
    headers: Mapping[str, str],
    gateway: Gateway,
    limits: CompiledLimits | None,
    body_timeout: float,
    deadline: Deadline,
) -> bytes:
    """A request's body, after the checks that come first: TurnoutError 431 for
    headers past ``gateway.max_header_bytes``, 401 for a missing or unknown key
    (before a byte of the body is read), 413 past ``gateway.max_body``, 408 when
    the body takes longer than ``body_timeout``."""
    if sum(len(k) + len(v) for k, v in headers.items()) > gateway.max_header_bytes:
        raise TurnoutError(
            f"the request headers are larger than the gateway's limit of "
            f"{gateway.max_header_bytes} bytes; send fewer or smaller headers "
            "or raise gateway.max_header_bytes in the policy",
            status_code=431,
            code="headers_too_large",
        )
    require_key(limits, headers)
    try:
        return await deadline.within(body_timeout, read_body(receive, headers, gateway.max_body))
    except TimeoutError:
        raise TurnoutError(
            f"the request body did not arrive within {body_timeout:g}s",
            status_code=408,
            code="request_timeout",
        ) from None
