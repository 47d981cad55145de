"""The wire format: OpenAI chat completions plus the seed's additions.

Requests are validated once, at the edge; unknown request fields are kept and
passed through to OpenAI-compatible upstreams (vendors add parameters faster
than any gateway). Responses keep unknown upstream fields too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AttemptRecord",
    "BilledUsage",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChunkChoice",
    "Delta",
    "ExtraFields",
    "Message",
    "ResponseMessage",
    "Usage",
]

MAX_REQUEST_FALLBACKS = 16
"""Most ``fallbacks`` one request may name: each is an upstream call (or several, with
retries), and a caller must not be able to make one request cost thousands."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


_OWN_FIELDS: set[str] = {"fallbacks", "turnout_messages_body"}
"""turnout's fields of a request, never sent upstream (``turnout_messages_body``:
the Messages surface's digest of the body a chat request was translated from)."""


class ChatRequest(_Open):
    """A chat-completion request as the seed defines it (``fallbacks`` included)."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    metadata: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None
    fallbacks: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=MAX_REQUEST_FALLBACKS, description="tried in order after the route's own"
    )

    @property
    def output_limit(self) -> int | None:
        """The most output tokens the caller allows, if it said."""
        return self.max_completion_tokens or self.max_tokens

    def upstream_body(self, model: str) -> dict[str, Any]:
        """The body to send an OpenAI-compatible upstream: our own fields removed."""
        body = self.model_dump(exclude_none=True, exclude=_OWN_FIELDS)
        body["model"] = model
        return body


class ResponseMessage(_Open):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(_Open):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class Usage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class BilledUsage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AttemptRecord(BaseModel):
    """One upstream call in a request's attempt trail."""

    provider: str
    model: str
    outcome: str = Field(description='"ok", or the failure class')
    latency_ms: float
    status_code: int | None = None
    message: str | None = None
    why: str | None = Field(None, description="why the plan had this attempt (strategy, figures)")
    started: float = Field(0.0, exclude=True)
    """When the call began, on the engine's clock (monotonic seconds); not on the wire."""


class ExtraFields(_Open):
    """The seed's ``extra_fields``, plus turnout's route, attempt trail and cost."""

    provider: str | None = None
    request_type: str = "chat_completion"
    model_requested: str | None = None
    model_params: dict[str, Any] = Field(default_factory=dict)
    latency: int = Field(0, description="milliseconds, end to end")
    billed_usage: BilledUsage | None = None
    raw_response: Any = None
    route: str | None = None
    request_id: str | None = None
    cost: float | None = Field(None, description="USD of the attempt that served, if priced")
    attempts: list[AttemptRecord] = Field(default_factory=list)
    cache: str | None = Field(
        None, description='the response cache: "hit", "miss" or "bypass" (None: no cache)'
    )
    skipped: list[dict[str, Any]] | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="targets the plan left out and why (a request fallback the key may "
        "not use: not_allowed); absent when none was",
    )


class ChatResponse(_Open):
    id: str
    object: str = "chat.completion"
    created: int = 0
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    extra_fields: ExtraFields | None = None


def _is_none(value: object) -> bool:
    return value is None


class Delta(_Open):
    """What one chunk adds. Fields it does not carry are left out of the JSON, as
    OpenAI's own chunks do (``{"content": "Hi"}``, and ``{}`` with the finish reason)."""

    role: str | None = Field(None, exclude_if=_is_none)
    content: str | None = Field(None, exclude_if=_is_none)
    refusal: str | None = Field(None, exclude_if=_is_none)
    tool_calls: list[dict[str, Any]] | None = Field(None, exclude_if=_is_none)


class ChunkChoice(_Open):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatChunk(_Open):
    id: str
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    extra_fields: ExtraFields | None = None
