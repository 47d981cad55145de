"""The built-in ``openai`` provider: OpenAI chat completions, and every server
that speaks them (vLLM, Ollama, llama.cpp, Groq, Together, ...) through
``base_url``.

The request is already in OpenAI format, so the provider only swaps the model
name, sends it, and validates the answer into the engine's schema. Streams
always ask the upstream for a final usage chunk (unless the caller chose
``stream_options.include_usage`` itself), so cost can be settled; see
``OpenAIProvider.stream``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError
from turnout.contract.hookspecs import hookimpl
from turnout.contract.provider import Provider, ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import _http
from turnout.upstream.clients import post_bytes
from turnout.wire.chat import ChatChunk, ChatResponse, ExtraFields

__all__ = ["OpenAIOptions", "OpenAIProvider"]


class OpenAIOptions(BaseModel):
    """``options:`` of an ``openai`` provider in routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream_usage: bool = True
    """Add ``stream_options.include_usage: true`` to streams whose caller did
    not set it. Turn off only for a server that rejects ``stream_options``;
    streamed requests to it are then not costed."""


class OpenAIProvider(Provider):
    """Chat completions against any OpenAI-compatible ``base_url``.

    Headers: the policy's ``headers``, then ``Authorization: Bearer <key>``
    when the attempt has a key (the key wins over a configured
    ``Authorization``). Timeouts: the client's, each capped at what the
    attempt has left (``call.timeout``).
    """

    Options = OpenAIOptions
    default_base_url = "https://api.openai.com/v1"
    requires_api_key = True
    price_provider = "openai"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        options = settings.options
        if not isinstance(options, OpenAIOptions):
            options_type = self.Options if self.Options is not None else OpenAIOptions
            options = options_type.model_validate(options or {})
        self._stream_usage = options.stream_usage
        self._raw_response = settings.raw_response
        self._url = f"{self.base_url}/chat/completions"
        configured = {name.lower(): value for name, value in settings.headers.items()}
        self._headers = {"content-type": "application/json", **configured}
        self._stream_headers = {**self._headers, "accept": "text/event-stream"}

    # Hook points for OpenAI-compatible vendors (presets, Azure): each is
    # called once per upstream call; the defaults are plain OpenAI.

    def request_url(self, call: ProviderCall) -> str:
        """The URL to POST one call to (Azure puts the deployment in the path)."""
        return self._url

    def request_headers(self, call: ProviderCall, *, stream: bool) -> dict[str, str]:
        """The headers of one call, authentication included (Bearer by default)."""
        return _with_key(self._stream_headers if stream else self._headers, call.api_key)

    def adapt_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON body to send, after ``stream``/``stream_options`` are settled;
        override to adjust a vendor's quirks (field names, enum values)."""
        return body

    async def chat(self, call: ProviderCall) -> ChatResponse:
        """Send one non-streaming request (``stream`` and ``stream_options`` removed).

        The response's ``extra_fields`` is None, or holds only ``raw_response``
        (the upstream's JSON) when the policy asks for it.
        """
        body = call.request.upstream_body(call.model)
        body.pop("stream", None)
        body.pop("stream_options", None)  # OpenAI rejects it without stream
        try:
            response = await post_bytes(
                call.client,
                self.request_url(call),
                content=pydantic_core.to_json(self.adapt_body(body)),
                headers=self.request_headers(call, stream=False),
                timeout=_http.attempt_timeout(call),
            )
        except httpx.RequestError as exc:
            raise _http.error_from_transport(exc, secret=call.api_key) from exc
        content = response.content
        if not response.is_success:
            raise _http.error_from_response(
                response.status_code,
                response.headers,
                content,
                reason=response.reason_phrase,
                secret=call.api_key,
            )
        try:
            result = ChatResponse.model_validate_json(content)
        except ValidationError as exc:
            raise _malformed(content, exc, "a chat completion", call.api_key) from None
        if result.model_extra and result.model_extra.get("error"):
            raise _embedded_error(result.model_extra, call.api_key)
        # extra_fields is turnout's namespace: never pass on an upstream gateway's.
        result.extra_fields = (
            ExtraFields(raw_response=json.loads(content)) if self._raw_response else None
        )
        return result

    async def stream(self, call: ProviderCall) -> AsyncIterator[ChatChunk]:
        """Send one streaming request and yield its chunks as the upstream sends them.

        Usage: unless the caller set ``stream_options.include_usage`` (either
        way), it is sent as ``true``, so the upstream ends with a usage-only
        chunk (``choices: []``) that the engine needs for cost accounting.
        That chunk is yielded like any other. A caller that did not ask for it
        should not see it; dropping it is the engine's job (it knows what the
        caller asked, and other providers produce such a chunk anyway).

        Ends at ``data: [DONE]``. A stream that ends without it, an ``error``
        event, or an ``{"error": ...}`` payload raises ``ProviderError``. The
        upstream response is closed however the iteration ends (consumer
        stops, cancellation, error).
        """
        body = call.request.upstream_body(call.model)
        body["stream"] = True
        if self._stream_usage:
            stream_options = body.get("stream_options")
            if stream_options is None:
                body["stream_options"] = {"include_usage": True}
            elif "include_usage" not in stream_options:
                stream_options["include_usage"] = True
        secret = call.api_key
        async with _http.event_stream(
            call,
            self.request_url(call),
            content=pydantic_core.to_json(self.adapt_body(body)),
            headers=self.request_headers(call, stream=True),
            on_status=lambda response: _http.error_from_response(
                response.status_code,
                response.headers,
                response.content,
                reason=response.reason_phrase,
                secret=secret,
            ),
            on_not_sse=lambda content_type, content: _not_a_stream(content_type, content, secret),
        ) as events:
            async for event in events:
                data = event.data
                if data.startswith("[DONE]"):
                    await _http.drain(events)
                    return
                if event.event == "error":
                    raise _error_event(data, secret)
                if not data:
                    continue
                try:
                    chunk = ChatChunk.model_validate_json(data)
                except ValidationError as exc:
                    raise _malformed(data, exc, "a chat completion chunk", secret) from None
                extra = chunk.model_extra
                if extra and extra.get("error"):
                    raise _embedded_error(extra, secret)
                if chunk.extra_fields is not None:
                    chunk.extra_fields = None
                yield chunk
        raise ProviderError(FailureClass.CONNECTION, "stream ended before [DONE]")


def _with_key(headers: dict[str, str], api_key: str | None) -> dict[str, str]:
    if api_key:
        return {**headers, "authorization": f"Bearer {api_key}"}
    return headers


def _malformed(
    content: bytes | str, exc: ValidationError, expected: str, secret: str | None
) -> ProviderError:
    """The error for a 2xx body (or stream payload) that is not what it should be."""
    try:
        payload = json.loads(content)
    except ValueError:
        return ProviderError(
            FailureClass.SERVER_ERROR, f"upstream answered with invalid JSON, not {expected}"
        )
    error = _http.error_object(payload)
    if error is not None:
        return _http.error_from_payload(error, secret=secret)
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return ProviderError(
        FailureClass.SERVER_ERROR,
        f"upstream answered with JSON that is not {expected} ({where}: {first['msg']})",
    )


def _embedded_error(payload: dict[str, Any], secret: str | None) -> ProviderError:
    error = _http.error_object(payload) or {"message": "upstream reported an error"}
    return _http.error_from_payload(error, secret=secret)


def _error_event(data: str, secret: str | None) -> ProviderError:
    try:
        error = _http.error_object(json.loads(data))
    except ValueError:
        error = None
    if error is None:
        error = {"message": f"upstream sent an error event: {data}"}
    return _http.error_from_payload(error, secret=secret)


def _not_a_stream(content_type: str, content: bytes, secret: str | None) -> ProviderError:
    try:
        error = _http.error_object(json.loads(content))
    except ValueError:
        error = None
    if error is not None:
        return _http.error_from_payload(error, secret=secret)
    return ProviderError(
        FailureClass.SERVER_ERROR,
        f"upstream answered a stream request with {content_type or 'no content type'!r}, "
        "not text/event-stream",
    )


@hookimpl
def turnout_register_providers(register: Any) -> None:
    """Register the ``openai`` provider type."""
    register("openai", OpenAIProvider)
