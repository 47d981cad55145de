"""The gateway's Anthropic Messages endpoints: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` (the ``?beta=true`` query the SDK's beta
client adds is accepted).

Errors are in Anthropic's shape, ``{"type": "error", "error": {"type",
"message"}, "request_id"}``, with the status the official SDK maps to the
right exception class (``turnout.surfaces.messages.error_status``); a failure
after a stream began is an ``event: error``. Answers carry the same
``x-turnout-*`` headers as chat completions and Anthropic's ``request-id``;
turnout's ``extra_fields`` is added to the body only when the client sends
``x-turnout-extra-fields: true``.
"""

from __future__ import annotations

from typing import Any

import structlog
from turnout.errors import TurnoutError
from turnout.http import sse
from turnout.http.asgi import Receive, Scope, Send
from turnout.http.disconnect import DisconnectWatch
from turnout.http.surfaces import (
    SurfaceEndpoints,
    error_headers,
    fields_headers,
    served_headers,
)
from turnout.http.wire import explain_invalid_json, internal_error, json_bytes, send_json
from turnout.surfaces.messages import (
    error_body,
    error_status,
    parse_count_tokens,
    parse_messages_request,
)
from turnout.wire.chat import ExtraFields

__all__ = ["MessagesEndpoints"]

log = structlog.get_logger("turnout.http")

Headers = list[tuple[bytes, bytes]]


def _anthropic(rid: str, head: Headers) -> Headers:
    """Anthropic's ``request-id`` beside turnout's headers."""
    return [(b"request-id", rid.encode()), *head]


class MessagesEndpoints(SurfaceEndpoints):
    """``/v1/messages`` handlers; the body limits and watchers are the other surfaces'."""

    async def send_error(self, send: Send, error: TurnoutError, rid: str) -> int:
        status = error_status(error.status_code)
        head = _anthropic(rid, error_headers(rid, error))  # retry-after too
        await send_json(send, status, json_bytes(error_body(error, rid)), head)
        return status

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work(headers: dict[str, str], rid: str) -> int:
            body = await self._body(headers, receive)
            try:
                parsed = parse_messages_request(body)
            except TurnoutError as exc:
                raise explain_invalid_json(body, exc) from None
            api = self._engine().messages
            with_extra = headers.get("x-turnout-extra-fields", "").lower() == "true"

            async def plain(watcher: DisconnectWatch) -> None:
                async def respond(message: dict[str, Any], fields: ExtraFields | None) -> None:
                    watcher.cancel()
                    await send_json(
                        send, 200, json_bytes(message), _anthropic(rid, fields_headers(rid, fields))
                    )

                await api.create(
                    parsed, headers=headers, request_id=rid, respond=respond, with_extra=with_extra
                )

            async def streamed(watcher: DisconnectWatch) -> None:
                stream = api.stream(parsed, headers=headers, request_id=rid)
                try:
                    await stream.open()
                    chat = stream.chat
                    head = [
                        *sse.SSE_HEADERS,
                        *_anthropic(rid, served_headers(rid, chat.plan.route.name, chat.trail)),
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": head})
                    try:
                        async for piece in stream:
                            await send(
                                {"type": "http.response.body", "body": piece, "more_body": True}
                            )
                    except Exception as exc:
                        error = exc if isinstance(exc, TurnoutError) else internal_error(rid)
                        if not isinstance(exc, TurnoutError):
                            log.exception("stream failed unexpectedly", request_id=rid)
                        await send(
                            {
                                "type": "http.response.body",
                                "body": stream.error(error, rid),
                                "more_body": True,
                            }
                        )
                    watcher.cancel()
                    await send({"type": "http.response.body", "body": b""})
                finally:
                    await stream.aclose()

            return await self._watched(scope, receive, streamed if parsed[0].stream else plain)

        await self._guarded("/v1/messages", scope, receive, send, work)

    async def count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work(headers: dict[str, str], rid: str) -> int:
            body = await self._body(headers, receive)
            try:
                parse_count_tokens(body)
            except TurnoutError as exc:
                raise explain_invalid_json(body, exc) from None
            count = await self._engine().messages.count_tokens(
                body, headers=headers, request_id=rid
            )
            head = _anthropic(rid, [(b"x-request-id", rid.encode())])
            head.append((b"x-turnout-token-count", count.source.encode()))
            await send_json(send, 200, json_bytes({"input_tokens": count.input_tokens}), head)
            return 200

        await self._guarded("/v1/messages/count_tokens", scope, receive, send, work)
