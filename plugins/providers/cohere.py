"""The built-in ``cohere`` provider: Cohere's v2 chat API.

``POST {base_url}/v2/chat`` (``/v2/embed`` for embeddings) with
``Authorization: Bearer <key>``; streams are
the same request with ``"stream": true``, answered as Server-Sent Events
(``message-start`` ... ``message-end``). Translation lives in ``cohere_wire``;
this module sends, reads and classifies failures.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import pydantic_core
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
        self._embed_url = f"{self.base_url}/v2/embed"

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

    async def embeddings(
        self, call: api.ProviderCall, request: api.EmbeddingsRequest
    ) -> api.Embeddings:
        """``POST /v2/embed`` for float vectors, at most ``EMBED_BATCH`` texts a
        call (one after another); ``dimensions`` is ``output_dimension``.
        ``input_type`` (which Cohere requires) is the caller's ``input_type``
        field if sent, else ``search_document``. Text only."""
        texts = request.texts
        if texts is None:
            raise api.TranslationError("Cohere embeds text: send input as strings, not tokens")
        extra = request.model_extra or {}
        input_type = extra.get("input_type", "search_document")
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            body: dict[str, Any] = {
                "model": call.model,
                "texts": batch,
                "input_type": input_type,
                "embedding_types": ["float"],
            }
            if request.dimensions is not None:
                body["output_dimension"] = request.dimensions
            upstream = api.UpstreamRequest(
                self._embed_url,
                pydantic_core.to_json(body),
                self.request_headers(call, stream=False),
                timeout=call.timeout,
            )
            reply = await self.send(call, upstream)
            got, billed = _embeddings_of(self.json_of(reply.content), len(batch))
            vectors += got
            tokens += billed
        return api.Embeddings(vectors, tokens, call.model)

    def translator(self, call: api.ProviderCall, reply: api.StreamReply) -> wire.CohereStream:
        """Complete at ``message-end``; a ``message-end`` with ``finish_reason``
        ERROR raises after the chunks already yielded; a usage-only chunk ends it."""
        return wire.CohereStream(
            model=call.model, created=int(time.time()), fallback_id=secrets.token_hex(12)
        )


EMBED_BATCH = 96
"""The most texts one ``/v2/embed`` call takes (Cohere's limit)."""


def _embeddings_of(payload: Any, count: int) -> tuple[list[list[float]], int]:
    """The float vectors and billed input tokens of an embed answer, checked."""
    embeddings = payload.get("embeddings") if isinstance(payload, dict) else None
    floats = embeddings.get("float") if isinstance(embeddings, dict) else None
    if not isinstance(floats, list) or len(floats) != count:
        raise api.ProviderError(
            api.FailureClass.SERVER_ERROR, f"Cohere did not answer {count} float embeddings"
        )
    for vector in floats:
        if not isinstance(vector, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in vector
        ):
            raise api.ProviderError(
                api.FailureClass.SERVER_ERROR, "Cohere answered an embedding that is not numbers"
            )
    billed = (payload.get("meta") or {}).get("billed_units") or {}
    tokens = billed.get("input_tokens") if isinstance(billed, dict) else None
    return floats, int(tokens) if isinstance(tokens, int | float) and tokens >= 0 else 0


@api.hookimpl
def turnout_register_providers(register: api.RegisterProvider) -> None:
    """Register the ``cohere`` provider type."""
    register("cohere", CohereProvider)
