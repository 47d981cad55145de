"""The built-in ``anthropic`` provider: Anthropic's Messages API behind the
OpenAI chat-completions format.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``
headers. The translation itself (system hoisting, role merging, tools, images,
thinking, stop reasons, usage, stream events) is pure and lives in
``anthropic_wire``; this module sends, receives and classifies failures::

    providers:
      anthropic:
        type: anthropic
        api_key: ${ANTHROPIC_API_KEY}
        options:
          max_tokens: 4096        # when a request sets none (default: per model)
          beta: [prompt-caching-2024-07-31]   # anthropic-beta header values
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2 as httpx
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field
from turnout.contract.hookspecs import hookimpl
from turnout.contract.provider import Provider, ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import _http
from turnout.plugins.providers import anthropic_wire as wire
from turnout.upstream.clients import Reply
from turnout.wire.chat import ChatChunk, ChatResponse, ExtraFields

__all__ = ["AnthropicOptions", "AnthropicProvider"]


class AnthropicOptions(BaseModel):
    """``options:`` of an ``anthropic`` provider in routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = Field(None, ge=1)
    """``max_tokens`` for requests that set neither ``max_tokens`` nor
    ``max_completion_tokens``. Unset: the model's own output limit (capped at
    21,333 without streaming, as the official SDKs do), or 4096 for a model
    turnout does not know."""

    version: str = wire.API_VERSION
    """The ``anthropic-version`` header."""

    beta: tuple[str, ...] = ()
    """Values of the ``anthropic-beta`` header, joined with commas."""


class AnthropicProvider(Provider):
    """Chat completions served by the Anthropic Messages API.

    Headers: the policy's ``headers``, then ``anthropic-version`` and
    ``x-api-key`` (the key wins over a configured one). A ``base_url`` may end
    in ``/v1`` or not. Failures map onto the engine's classes by HTTP status,
    refined by Anthropic's ``error.type`` (see ``anthropic_wire.classify_error``):
    529 ``overloaded_error`` → overloaded, 429 → rate_limited (with
    ``retry-after``), 500 → server_error, 401/403/402 → auth, 413 and "prompt is
    too long" → context_length, other 4xx → bad_request.
    """

    Options = AnthropicOptions
    default_base_url = "https://api.anthropic.com"
    requires_api_key = True
    price_provider = "anthropic"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        options = settings.options
        if not isinstance(options, AnthropicOptions):
            options = AnthropicOptions.model_validate(options or {})
        self._max_tokens = options.max_tokens
        self._raw_response = settings.raw_response
        base = self.base_url
        self._url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        headers = {name.lower(): value for name, value in settings.headers.items()}
        headers.pop("authorization", None)  # Anthropic authenticates with x-api-key only
        headers.update({"content-type": "application/json", "anthropic-version": options.version})
        if options.beta:
            headers["anthropic-beta"] = ",".join(options.beta)
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def _body(self, call: ProviderCall, *, stream: bool) -> bytes:
        max_tokens = wire.default_max_tokens(call.model, stream=stream, configured=self._max_tokens)
        body = wire.messages_body(call.request, call.model, max_tokens=max_tokens, stream=stream)
        return pydantic_core.to_json(body)

    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one non-streaming request; the answer as a ``chat.completion``.

        ``extra_fields`` holds only ``raw_response`` (Anthropic's JSON) when the
        policy asks for it.
        """
        content = self._body(call, stream=False)
        secret = call.api_key
        payload = await _http.post_json(
            call,
            self._url,
            content=content,
            headers=_with_key(self._headers, secret),
            on_status=lambda response: _error_from_response(response, secret),
        )
        error = _http.error_object(payload)
        if error is not None:
            raise _error_from_payload(error, None, None, secret)
        if not isinstance(payload, dict):
            raise ProviderError(FailureClass.SERVER_ERROR, "upstream answered with a non-object")
        result = wire.chat_response(payload, created=int(time.time()))
        if self._raw_response:
            result.extra_fields = ExtraFields(raw_response=payload)
        return result

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one streaming request; yield OpenAI chunks as events arrive.

        Ends after ``message_stop`` with a usage-only chunk (``choices: []``).
        An ``error`` event (e.g. ``overloaded_error`` mid-stream) raises
        ``ProviderError`` classified like an HTTP error; a stream that ends
        before ``message_stop`` raises CONNECTION. The upstream response is
        closed however the iteration ends.
        """
        content = self._body(call, stream=True)
        secret = call.api_key
        translator = wire.StreamTranslator(created=int(time.time()), model=call.model)
        async with _http.event_stream(
            call,
            self._url,
            content=content,
            headers=_with_key(self._stream_headers, secret),
            on_status=lambda response: _error_from_response(response, secret),
            on_not_sse=lambda content_type, body: _not_a_stream(content_type, body, secret),
        ) as events:
            async for event in events:
                if not event.data:
                    continue
                try:
                    data = json.loads(event.data)
                except ValueError:
                    raise ProviderError(
                        FailureClass.SERVER_ERROR, "upstream sent an event that is not JSON"
                    ) from None
                if not isinstance(data, dict):
                    continue
                name = event.event if event.event != "message" else data.get("type", "")
                if name == "error":
                    error = _http.error_object(data) or {"message": event.data}
                    raise _error_from_payload(error, None, None, secret)
                for chunk in translator.event(str(name), data):
                    yield chunk
                if translator.done:
                    await _http.drain(events)
                    return
        raise ProviderError(FailureClass.CONNECTION, "stream ended before message_stop")


def _with_key(headers: dict[str, str], api_key: str | None) -> dict[str, str]:
    return {**headers, "x-api-key": api_key} if api_key else headers


def _error_from_payload(
    error: Mapping[str, Any], status: int | None, retry_after: float | None, secret: str | None
) -> ProviderError:
    exc = _http.error_from_payload(error, status=status, retry_after=retry_after, secret=secret)
    exc.failure = wire.classify_error(status, error)
    return exc


def _error_from_response(response: httpx.Response | Reply, secret: str | None) -> ProviderError:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` for a non-2xx."""
    status = response.status_code
    try:
        error = _http.error_object(json.loads(response.content)) if response.content else None
    except ValueError:
        error = None
    if error is None:  # a proxy's HTML page, an empty body: the status decides
        return _http.error_from_response(
            status, response.headers, response.content, reason=response.reason_phrase, secret=secret
        )
    return _error_from_payload(error, status, _http.parse_retry_after(response.headers), secret)


def _not_a_stream(content_type: str, content: bytes, secret: str | None) -> ProviderError:
    try:
        error = _http.error_object(json.loads(content))
    except ValueError:
        error = None
    if error is not None:
        return _error_from_payload(error, None, None, secret)
    return ProviderError(
        FailureClass.SERVER_ERROR,
        f"upstream answered a stream request with {content_type or 'no content type'!r}, "
        "not text/event-stream",
    )


@hookimpl
def turnout_register_providers(register: Any) -> None:
    """Register the ``anthropic`` provider type."""
    register("anthropic", AnthropicProvider)
