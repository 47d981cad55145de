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

import secrets
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from turnout import provider_api as api
from turnout.plugins.providers import gemini_wire as wire

__all__ = ["GeminiOptions", "GeminiProvider"]


class GeminiOptions(BaseModel):
    """``options:`` of a ``gemini`` provider in routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: str = "v1beta"
    """The path segment before ``/models``; ``v1beta`` has every feature used here."""


class GeminiProvider(api.TranslatingProvider):
    """Gemini models through the Gemini API (Google AI Studio keys)."""

    Options = GeminiOptions
    default_base_url = "https://generativelanguage.googleapis.com"
    requires_api_key = True
    price_provider = "google"
    vendor = "Gemini"
    stream_end = "Gemini sent a finishReason"
    stop_at_end = False  # no terminator: the usage may follow the last finishReason

    def __init__(self, settings: api.ProviderSettings) -> None:
        super().__init__(settings)
        self._root = f"{self.base_url}/{self.options.api_version.strip('/')}"

    def authorize(self, headers: dict[str, str], key: str) -> dict[str, str]:
        return {**headers, "x-goog-api-key": key}

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        model = call.model
        collection, _, name = model.partition("/")
        if name and collection in ("models", "tunedModels"):
            resource = f"{collection}/{api.path_segment(name)}"
        else:
            resource = "models/" + api.path_segment(model)
        if stream:
            return f"{self._root}/{resource}:streamGenerateContent?alt=sse"
        return f"{self._root}/{resource}:generateContent"

    def request_body(self, call: api.ProviderCall, *, stream: bool) -> Any:
        return wire.request_body(call.request, call.model)

    def translate_reply(
        self, call: api.ProviderCall, payload: Any, reply: api.Reply
    ) -> api.ChatResponse:
        """A refused prompt is CONTENT_FILTER; a reply without candidates a SERVER_ERROR."""
        _check_blocked(payload)
        if not payload.get("candidates"):
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR, "Gemini answered with no candidates"
            )
        return wire.response_from_gemini(
            payload, model=call.model, created=int(time.time()), fallback_id=_fallback_id()
        )

    def error_in(self, payload: Any) -> Mapping[str, Any] | None:
        """Google's ``{"error": {"code", "message", "status", "details"}}`` (also as
        the first item of the JSON-array form, without ``alt=sse``)."""
        if isinstance(payload, list) and payload:
            payload = payload[0]
        error = payload.get("error") if isinstance(payload, dict) else None
        return error if isinstance(error, dict) else None

    def failure_of(self, error: Mapping[str, Any], status: int | None) -> api.FailureClass:
        """By Google's canonical ``status`` (``RESOURCE_EXHAUSTED``, ...)."""
        return wire.failure_class(status, error)

    def retry_delay(self, error: Mapping[str, Any]) -> float | None:
        return wire.retry_delay(error)

    def decode_event(
        self, event: api.ServerSentEvent, call: api.ProviderCall
    ) -> tuple[str, Any] | None:
        decoded = super().decode_event(event, call)
        if decoded is not None:
            _check_blocked(decoded[1])
        return decoded

    def translator(self, call: api.ProviderCall, reply: api.StreamReply) -> wire.GeminiStream:
        """Complete when every candidate has sent its ``finishReason``; a final
        usage-only chunk follows."""
        return wire.GeminiStream(
            model=call.model, created=int(time.time()), fallback_id=_fallback_id()
        )


def _fallback_id() -> str:
    return secrets.token_hex(12)


def _check_blocked(payload: Mapping[str, Any]) -> None:
    """Raise for a refused prompt inside a 200 body or event."""
    reason = wire.block_reason(payload)
    if reason is not None:
        raise api.ProviderError(
            api.FailureClass.CONTENT_FILTER,
            f"Gemini blocked the prompt (blockReason {reason})",
            code="content_filter",
        )


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``gemini`` provider type."""
    register("gemini", GeminiProvider)
