"""The built-in ``cohere`` provider: Cohere's v2 chat API.

``POST {base_url}/v2/chat`` with ``Authorization: Bearer <key>``; streams are
the same request with ``"stream": true``, answered as Server-Sent Events
(``message-start`` ... ``message-end``). Translation lives in ``cohere_wire``;
this module sends, reads and classifies failures.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pydantic_core
from turnout.contract.hookspecs import hookimpl
from turnout.contract.provider import Provider, ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import _http
from turnout.plugins.providers import cohere_wire as wire
from turnout.wire.chat import ChatChunk, ChatResponse, ExtraFields

__all__ = ["CohereProvider"]


class CohereProvider(Provider):
    """Cohere Command models through the v2 chat API."""

    default_base_url = "https://api.cohere.com"
    requires_api_key = True
    price_provider = "cohere"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._url = f"{self.base_url}/v2/chat"
        self._raw_response = settings.raw_response
        configured = {name.lower(): value for name, value in settings.headers.items()}
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers.update(configured)
        self._stream_headers = {**self._headers, "accept": "text/event-stream"}

    def _prepare(self, call: ProviderCall, *, stream: bool) -> tuple[bytes, dict[str, str]]:
        try:
            body = wire.request_body(call.request, call.model)
        except wire.TranslationError as exc:
            raise ProviderError(FailureClass.BAD_REQUEST, str(exc)) from None
        body["stream"] = stream
        headers = self._stream_headers if stream else self._headers
        if call.api_key:
            headers = {**headers, "authorization": f"Bearer {call.api_key}"}
        return pydantic_core.to_json(body), headers

    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one non-streaming request and translate its answer."""
        content, headers = self._prepare(call, stream=False)
        secret = call.api_key
        payload = await _http.post_json(
            call,
            self._url,
            content=content,
            headers=headers,
            on_status=lambda r: _error(r.status_code, r.headers, r.content, secret),
            vendor="Cohere",
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
            raise ProviderError(FailureClass.SERVER_ERROR, "Cohere answered with no chat message")
        try:
            result = wire.response_from_cohere(payload, model=call.model, created=int(time.time()))
        except wire.GenerationFailed as exc:
            raise ProviderError(exc.failure, exc.message) from None
        if self._raw_response:
            result.extra_fields = ExtraFields(raw_response=payload)
        return result

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one streaming request and yield OpenAI chunks, then a usage-only chunk.

        The stream is complete at ``message-end``; one that ends before it is a
        CONNECTION failure, and a ``message-end`` with ``finish_reason`` ERROR
        raises after the chunks already yielded.
        """
        content, headers = self._prepare(call, stream=True)
        secret = call.api_key
        translator = wire.CohereStream(
            model=call.model, created=int(time.time()), fallback_id=secrets.token_hex(12)
        )
        async with _http.event_stream(
            call,
            self._url,
            content=content,
            headers=headers,
            on_status=lambda r: _error(r.status_code, r.headers, r.content, secret),
            on_not_sse=lambda content_type, _: ProviderError(
                FailureClass.SERVER_ERROR,
                f"Cohere answered a stream request with {content_type or 'no type'!r}, "
                "not text/event-stream",
            ),
            vendor="Cohere",
        ) as events:
            async for event in events:
                if not event.data or event.data.startswith("[DONE]"):
                    continue
                try:
                    payload = json.loads(event.data)
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):
                    raise ProviderError(
                        FailureClass.SERVER_ERROR, "Cohere sent an event that is not JSON"
                    )
                try:
                    chunks = translator.feed(payload, event.event)
                except wire.GenerationFailed as exc:
                    raise ProviderError(exc.failure, exc.message) from None
                for chunk in chunks:
                    yield chunk
                if translator.finished:
                    break
        if not translator.finished:
            raise ProviderError(FailureClass.CONNECTION, "stream ended before Cohere's message-end")
        usage = translator.usage_chunk()
        if usage is not None:
            yield usage


def _error(status: int, headers: Any, content: bytes, secret: str | None) -> ProviderError:
    """A ``ProviderError`` for a non-2xx answer: ``{"id", "message"}``, or anything else."""
    try:
        payload = json.loads(content) if content else None
    except ValueError:
        payload = None
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, str) or not message:
        return _http.error_from_response(status, headers, content, secret=secret)
    # error_from_payload masks the key and caps the length; the class is Cohere's own.
    base = _http.error_from_payload({"message": message}, status=status, secret=secret)
    return ProviderError(
        wire.failure_class(status, message),
        base.message,
        status_code=status,
        retry_after=_http.parse_retry_after(headers),
    )


@hookimpl
def turnout_register_providers(register: Any) -> None:
    """Register the ``cohere`` provider type."""
    register("cohere", CohereProvider)
