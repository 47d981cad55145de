"""The built-in ``gemini`` provider: Google AI Studio's Generative Language API.

``POST {base_url}/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (``:batchEmbedContents`` for embeddings),
with the key in ``x-goog-api-key`` (never in the URL, where it would end up
in logs). Translation lives in
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

import pydantic_core
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

    def _resource(self, model: str) -> str:
        collection, _, name = model.partition("/")
        if name and collection in ("models", "tunedModels"):
            return f"{collection}/{api.path_segment(name)}"
        return "models/" + api.path_segment(model)

    def request_url(self, call: api.ProviderCall, *, stream: bool = False) -> str:
        resource = self._resource(call.model)
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

    async def embeddings(
        self, call: api.ProviderCall, request: api.EmbeddingsRequest
    ) -> api.Embeddings:
        """``:batchEmbedContents``, at most ``EMBED_BATCH`` inputs a call (one
        call after another); ``dimensions`` is ``outputDimensionality``. Gemini
        embeds text only, and reports no usage: tokens are estimated from the
        text (≈4 characters a token) so the price catalog can bill them."""
        texts = request.texts
        if texts is None:
            raise api.TranslationError("Gemini embeds text: send input as strings, not tokens")
        resource = self._resource(call.model)
        url = f"{self._root}/{resource}:batchEmbedContents"
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            body = {"requests": [_embed_request(resource, t, request.dimensions) for t in batch]}
            upstream = api.UpstreamRequest(
                url,
                pydantic_core.to_json(body),
                self.request_headers(call, stream=False),
                timeout=call.timeout,
            )
            reply = await self.send(call, upstream)
            vectors += _embeddings_of(self.json_of(reply.content), len(batch))
        tokens = sum((len(text) + 3) // 4 for text in texts)
        return api.Embeddings(vectors, tokens, call.model)

    def translator(self, call: api.ProviderCall, reply: api.StreamReply) -> wire.GeminiStream:
        """Complete when every candidate has sent its ``finishReason``; a final
        usage-only chunk follows."""
        return wire.GeminiStream(
            model=call.model, created=int(time.time()), fallback_id=_fallback_id()
        )


EMBED_BATCH = 100
"""The most inputs one ``batchEmbedContents`` call takes (Google's limit)."""


def _embed_request(resource: str, text: str, dimensions: int | None) -> dict[str, Any]:
    one: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
    if dimensions is not None:
        one["outputDimensionality"] = dimensions
    return one


def _embeddings_of(payload: Any, count: int) -> list[list[float]]:
    """The ``values`` of a ``batchEmbedContents`` answer, checked."""
    items = payload.get("embeddings") if isinstance(payload, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise api.ProviderError(
            api.FailureClass.SERVER_ERROR, f"Gemini did not answer {count} embeddings"
        )
    vectors = []
    for item in items:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR, "Gemini answered an embedding that is not numbers"
            )
        vectors.append([float(v) for v in values])
    return vectors


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
