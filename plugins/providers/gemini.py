"""The built-in ``gemini`` provider: Google AI Studio's Generative Language API.

``POST {base_url}/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, with the key in ``x-goog-api-key`` (never
in the URL, where it would end up in logs). Translation lives in
``gemini_wire``; this module sends, reads and classifies failures.

A prompt Gemini refuses (``promptFeedback.blockReason``) is a CONTENT_FILTER
failure; a reply it stops for safety is a normal response whose
``finish_reason`` is ``content_filter``.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2 as httpx
import pydantic_core
from pydantic import BaseModel, ConfigDict
from turnout.contract.hookspecs import hookimpl
from turnout.contract.provider import Provider, ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import _http
from turnout.plugins.providers import gemini_wire as wire
from turnout.upstream.clients import Reply
from turnout.wire.chat import ChatChunk, ChatResponse, ExtraFields

__all__ = ["GeminiOptions", "GeminiProvider"]


class GeminiOptions(BaseModel):
    """``options:`` of a ``gemini`` provider in routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: str = "v1beta"
    """The path segment before ``/models``; ``v1beta`` has every feature used here."""


class GeminiProvider(Provider):
    """Gemini models through the Gemini API (Google AI Studio keys)."""

    Options = GeminiOptions
    default_base_url = "https://generativelanguage.googleapis.com"
    requires_api_key = True
    price_provider = "google"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        options = settings.options
        if not isinstance(options, GeminiOptions):
            options = GeminiOptions.model_validate(options or {})
        self._root = f"{self.base_url}/{options.api_version.strip('/')}"
        self._raw_response = settings.raw_response
        configured = {name.lower(): value for name, value in settings.headers.items()}
        self._headers = {"content-type": "application/json", **configured}

    def _url(self, model: str, method: str) -> str:
        if model.startswith(("models/", "tunedModels/")):
            resource = model
        else:
            resource = "models/" + urllib.parse.quote(model, safe="")
        return f"{self._root}/{resource}:{method}"

    def _prepare(self, call: ProviderCall) -> tuple[bytes, dict[str, str]]:
        try:
            body = wire.request_body(call.request, call.model)
        except wire.TranslationError as exc:
            raise ProviderError(FailureClass.BAD_REQUEST, str(exc)) from None
        headers = self._headers
        if call.api_key:
            headers = {**headers, "x-goog-api-key": call.api_key}
        return pydantic_core.to_json(body), headers

    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one ``generateContent`` request and translate its answer."""
        content, headers = self._prepare(call)
        secret = call.api_key
        payload = await _http.post_json(
            call,
            self._url(call.model, "generateContent"),
            content=content,
            headers=headers,
            on_status=lambda response: _error_from_response(response, secret),
            vendor="Gemini",
        )
        if not isinstance(payload, dict):
            raise ProviderError(FailureClass.SERVER_ERROR, "Gemini answered with a non-object")
        _check_payload(payload, secret)
        if not payload.get("candidates"):
            raise ProviderError(FailureClass.SERVER_ERROR, "Gemini answered with no candidates")
        result = wire.response_from_gemini(
            payload, model=call.model, created=int(time.time()), fallback_id=_fallback_id()
        )
        if self._raw_response:
            result.extra_fields = ExtraFields(raw_response=payload)
        return result

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one ``streamGenerateContent?alt=sse`` request and yield OpenAI chunks.

        Gemini's stream has no terminator: it is complete when every
        candidate has sent its ``finishReason``; a body that ends before
        that is a CONNECTION failure. A final usage-only chunk follows.
        """
        content, headers = self._prepare(call)
        secret = call.api_key
        translator = wire.GeminiStream(
            model=call.model, created=int(time.time()), fallback_id=_fallback_id()
        )
        url = self._url(call.model, "streamGenerateContent") + "?alt=sse"
        async with _http.event_stream(
            call,
            url,
            content=content,
            headers=headers,
            on_status=lambda response: _error_from_response(response, secret),
            on_not_sse=lambda content_type, body: _not_a_stream(content_type, body, secret),
            vendor="Gemini",
        ) as events:
            async for event in events:
                if not event.data:
                    continue
                try:
                    payload = json.loads(event.data)
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):
                    raise ProviderError(
                        FailureClass.SERVER_ERROR, "Gemini sent an event that is not JSON"
                    )
                _check_payload(payload, secret)
                for chunk in translator.feed(payload):
                    yield chunk
        if not translator.finished:
            raise ProviderError(
                FailureClass.CONNECTION, "stream ended before Gemini sent a finishReason"
            )
        usage = translator.usage_chunk()
        if usage is not None:
            yield usage


def _fallback_id() -> str:
    return secrets.token_hex(12)


def _check_payload(payload: Mapping[str, Any], secret: str | None) -> None:
    """Raise for an error object or a refused prompt inside a 200 body or event."""
    error = payload.get("error")
    if isinstance(error, dict):
        raise _error_from_object(error, None, None, secret)
    reason = wire.block_reason(payload)
    if reason is not None:
        raise ProviderError(
            FailureClass.CONTENT_FILTER,
            f"Gemini blocked the prompt (blockReason {reason})",
            code="content_filter",
        )


def _error_from_object(
    error: Mapping[str, Any], status: int | None, retry_after: float | None, secret: str | None
) -> ProviderError:
    """A ``ProviderError`` for Google's ``{"code", "message", "status", "details"}``."""
    # error_from_payload masks the key out of the message and caps its length;
    # the class comes from Google's canonical status, which it does not know.
    base = _http.error_from_payload(error, status=status, secret=secret)
    if retry_after is None:
        retry_after = wire.retry_delay(error)
    return ProviderError(
        wire.failure_class(status, error),
        base.message,
        status_code=status,
        retry_after=retry_after,
    )


def _error_from_response(response: httpx.Response | Reply, secret: str | None) -> ProviderError:
    status = response.status_code
    retry_after = _http.parse_retry_after(response.headers)
    try:
        payload = json.loads(response.content) if response.content else None
    except ValueError:
        payload = None
    if isinstance(payload, list) and payload:  # the JSON-array form, without alt=sse
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return _error_from_object(error, status, retry_after, secret)
    return _http.error_from_response(
        status, response.headers, response.content, reason=response.reason_phrase, secret=secret
    )


def _not_a_stream(content_type: str, content: bytes, secret: str | None) -> ProviderError:
    try:
        payload = json.loads(content)
    except ValueError:
        payload = None
    if isinstance(payload, list) and payload:
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return _error_from_object(error, None, None, secret)
    return ProviderError(
        FailureClass.SERVER_ERROR,
        f"Gemini answered a stream request with {content_type or 'no content type'!r}, "
        "not text/event-stream",
    )


@hookimpl
def turnout_register_providers(register: Any) -> None:
    """Register the ``gemini`` provider type."""
    register("gemini", GeminiProvider)
