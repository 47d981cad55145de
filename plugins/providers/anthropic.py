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

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from turnout import provider_api as api
from turnout.plugins.providers import anthropic_wire as wire

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


class AnthropicProvider(api.TranslatingProvider):
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
    stream_end = "message_stop"
    native_surfaces = frozenset({"messages", "messages.count_tokens"})
    native_end = "message_stop"

    def __init__(self, settings: api.ProviderSettings) -> None:
        super().__init__(settings)
        base = self.base_url
        self._url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def base_headers(self, configured: dict[str, str]) -> dict[str, str]:
        headers = dict(configured)
        headers.pop("authorization", None)  # Anthropic authenticates with x-api-key only
        headers.update(
            {"content-type": "application/json", "anthropic-version": self.options.version}
        )
        if self.options.beta:
            headers["anthropic-beta"] = ",".join(self.options.beta)
        return headers

    def authorize(self, headers: dict[str, str], key: str) -> dict[str, str]:
        return {**headers, "x-api-key": key}

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        return self._url

    def native_url(self, call: api.ProviderCall, surface: str) -> str:
        """``/v1/messages`` and ``/v1/messages/count_tokens``: the caller's
        Messages request goes upstream as it was written."""
        return self._url + "/count_tokens" if surface == "messages.count_tokens" else self._url

    def output_ceiling(self, request: api.ChatRequest, model: str) -> int | None:
        # a stream's default is the larger one; thinking may raise either
        default = wire.default_max_tokens(model, stream=True, configured=self.options.max_tokens)
        return wire.sent_max_tokens(request, model, max_tokens=default)

    def request_body(self, call: api.ProviderCall, *, stream: bool) -> Any:
        max_tokens = wire.default_max_tokens(
            call.model, stream=stream, configured=self.options.max_tokens
        )
        return wire.messages_body(call.request, call.model, max_tokens=max_tokens, stream=stream)

    def translate_reply(
        self, call: api.ProviderCall, payload: Any, reply: api.Reply
    ) -> api.ChatResponse:
        return wire.chat_response(payload, created=int(time.time()))

    def failure_of(self, error: Mapping[str, Any], status: int | None) -> api.FailureClass:
        """Anthropic's ``{"type": "error", "error": {"type", "message"}}``, classed
        by its ``error.type``."""
        return wire.classify_error(status, error)

    def decode_event(
        self, event: api.ServerSentEvent, call: api.ProviderCall
    ) -> tuple[str, Any] | None:
        """Events are named by their SSE name, or their data's ``type``; an
        ``error`` event (e.g. ``overloaded_error`` mid-stream) raises, classified
        like an HTTP error."""
        decoded = super().decode_event(event, call)
        if decoded is None:
            return None
        name, data = decoded
        return (name if name != "message" else str(data.get("type", ""))), data

    def translator(self, call: api.ProviderCall, reply: api.StreamReply) -> wire.StreamTranslator:
        """Ends after ``message_stop`` with a usage-only chunk (``choices: []``)."""
        return wire.StreamTranslator(created=int(time.time()), model=call.model)


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``anthropic`` provider type."""
    register("anthropic", AnthropicProvider)
