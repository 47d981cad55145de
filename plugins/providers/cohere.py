"""The built-in ``cohere`` provider: Cohere's v2 chat API.

``POST {base_url}/v2/chat`` with ``Authorization: Bearer <key>``; streams are
the same request with ``"stream": true``, answered as Server-Sent Events
(``message-start`` ... ``message-end``). Translation lives in ``cohere_wire``;
this module sends, reads and classifies failures.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from turnout import provider_api as api
from turnout.plugins.providers import cohere_wire as wire

__all__ = ["CohereProvider"]


class CohereProvider(api.TranslatingProvider):
    """Cohere Command models through the v2 chat API."""

    default_base_url = "https://api.cohere.com"
    requires_api_key = True
    price_provider = "cohere"
    vendor = "Cohere"
    stream_end = "Cohere's message-end"

    def __init__(self, settings: api.ProviderSettings) -> None:
        super().__init__(settings)
        self._url = f"{self.base_url}/v2/chat"

    def base_headers(self, configured: dict[str, str]) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json", **configured}

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        return self._url

    def request_body(self, call: api.ProviderCall, *, stream: bool) -> Any:
        body = wire.request_body(call.request, call.model)
        body["stream"] = stream
        return body

    def translate_reply(
        self, call: api.ProviderCall, payload: Any, reply: api.Reply
    ) -> api.ChatResponse:
        if not isinstance(payload.get("message"), dict):
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR, "Cohere answered with no chat message"
            )
        return wire.response_from_cohere(payload, model=call.model, created=int(time.time()))

    def error_in(self, payload: Any) -> Mapping[str, Any] | None:
        """Cohere's errors are ``{"id", "message"}``."""
        message = payload.get("message") if isinstance(payload, dict) else None
        return {"message": message} if isinstance(message, str) and message else None

    def failure_of(self, error: Mapping[str, Any], status: int | None) -> api.FailureClass:
        return wire.failure_class(status, str(error.get("message", "")))

    def decode_event(
        self, event: api.ServerSentEvent, call: api.ProviderCall
    ) -> tuple[str, Any] | None:
        if event.data.startswith("[DONE]"):
            return None
        return super().decode_event(event, call)

    def translator(self, call: api.ProviderCall, reply: api.StreamReply) -> wire.CohereStream:
        """Complete at ``message-end``; a ``message-end`` with ``finish_reason``
        ERROR raises after the chunks already yielded; a usage-only chunk ends it."""
        return wire.CohereStream(
            model=call.model, created=int(time.time()), fallback_id=secrets.token_hex(12)
        )


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``cohere`` provider type."""
    register("cohere", CohereProvider)
