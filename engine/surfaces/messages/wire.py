"""The Anthropic Messages request as the gateway reads it, and its error shape.

Field names follow Anthropic's API reference and the official SDK's types
(``anthropic.types.MessageCreateParams``). Unknown fields are kept: a native
target gets them as sent, a translation refuses what it cannot express.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from turnout.errors import TurnoutError

__all__ = [
    "REQUEST_TYPE",
    "CountTokensRequest",
    "MessageParam",
    "MessagesRequest",
    "error_body",
    "error_status",
    "parse_count_tokens",
    "parse_messages_request",
]

REQUEST_TYPE = "messages"
"""``extra_fields.request_type`` of an answer served on ``/v1/messages``."""



class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MessageParam(_Open):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class CountTokensRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    metadata: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    fallbacks: list[str] | list[dict[str, Any]] | Literal["default"] | None = None
    """Two meanings, told apart by shape: a list of ``provider/model`` strings is
    the seed's (turnout routes to them after the plan's own attempts; never
    sent upstream); ``"default"`` or a list of ``{"model", ...}`` objects is
    Anthropic's server-side refusal fallback, sent as written to a native
    target (a chat target cannot take it)."""

    @property
    def turnout_fallbacks(self) -> list[str] | None:
        """The seed's request fallbacks, when that is what ``fallbacks`` holds."""
        value = self.fallbacks
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value  # type: ignore[return-value]
        return None


def _parse(model: type[CountTokensRequest], body: bytes | str | Mapping[str, Any]) -> Any:
    """Validate once; ``(request, raw dict)``. 400 naming the field otherwise
    (Anthropic answers every malformed request with 400)."""
    try:
        raw = pydantic_core.from_json(body) if isinstance(body, bytes | str) else dict(body)
    except ValueError as exc:
        raise TurnoutError(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise TurnoutError("the body must be a JSON object", code="invalid_request")
    try:
        return model.model_validate(raw), raw
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]]
        raise TurnoutError(
            "invalid request: " + "; ".join(parts),
            code="invalid_request",
            param=".".join(str(p) for p in errors[0]["loc"]) or None,
        ) from None


def parse_messages_request(
    body: bytes | str | Mapping[str, Any],
) -> tuple[MessagesRequest, dict[str, Any]]:
    """The validated request and the body as sent (what a native target gets)."""
    request, raw = _parse(MessagesRequest, body)
    return request, raw


def parse_count_tokens(
    body: bytes | str | Mapping[str, Any],
) -> tuple[CountTokensRequest, dict[str, Any]]:
    request, raw = _parse(CountTokensRequest, body)
    return request, raw


# status -> Anthropic's error.type, as its API reference lists them; the SDK
# maps the status to its exception class (529 -> OverloadedError).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_status(status: int) -> int:
    """The status an Anthropic client expects for one of turnout's: validation
    (422) is 400, oversized headers 413, no target available (503) 529."""
    if status in (408, 422):
        return 400
    if status == 431:
        return 413
    if status == 503:
        return 529
    if status == 502:
        return 500
    return status


def error_body(error: TurnoutError, request_id: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    status = error_status(error.status_code)
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": error.message},
        "request_id": request_id,
    }
