"""Legacy text completions (``POST /v1/completions``): native where the
upstream offers them, else as one chat turn.

A target whose provider the policy marks ``native: [completions]`` (vLLM,
Ollama, llama.cpp, ... behind the ``openai`` type) gets the body as written,
only ``model`` replaced (and turnout's ``fallbacks`` left out), and its answer
or stream comes back as sent. Every other target gets one chat turn: the
prompt becomes one user message and the chat answer's text the completion's
``text``. What a chat turn cannot express (several prompts or token-array
prompts in one request, ``suffix``, ``logprobs``, ``best_of`` above 1) skips
such a target for a native one, or is a 400 naming the field when the plan has
none. ``echo: true`` puts the prompt before the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from turnout.errors import TurnoutError
from turnout.wire.chat import ChatRequest, ChatResponse, ExtraFields

__all__ = [
    "REQUEST_TYPE",
    "CompletionRequest",
    "completion_of",
    "to_chat_request",
    "untranslatable",
]

REQUEST_TYPE = "text.completion"

_PASSED: tuple[str, ...] = (
    *("temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty"),
    *("seed", "user", "logit_bias", "max_tokens", "metadata", "fallbacks"),
)


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stream: bool | None = None
    stop: str | list[str] | None = None
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    fallbacks: list[str] | None = None

    @property
    def text(self) -> str:
        prompt = self.prompt
        return prompt if isinstance(prompt, str) else str(prompt[0])


def _bad(message: str, param: str) -> TurnoutError:
    return TurnoutError(message, code="invalid_request", param=param)


def parse_completion_request(body: bytes | str | Mapping[str, Any]) -> CompletionRequest:
    try:
        if isinstance(body, bytes | str):
            return CompletionRequest.model_validate_json(body)
        return CompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise TurnoutError(
                f"the body is not valid JSON: {first['msg']}", code="invalid_json"
            ) from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        status = 400 if first["type"] in ("missing", "model_type") else 422
        raise TurnoutError(
            f"invalid request: {where}: {first['msg']}",
            status_code=status,
            code="invalid_request",
            param=where,
        ) from None


def untranslatable(request: CompletionRequest) -> TurnoutError | None:
    """The 400 for what a chat turn cannot say, or None."""
    prompt = request.prompt
    if isinstance(prompt, list) and (len(prompt) != 1 or not isinstance(prompt[0], str)):
        return _bad(
            "send one prompt string per request: several prompts and token-array "
            "prompts need a target that offers /v1/completions itself",
            "prompt",
        )
    if request.suffix:
        return _bad("suffix (fill in the middle) cannot be expressed as a chat turn", "suffix")
    if request.logprobs:
        return _bad("logprobs are not available through a chat translation", "logprobs")
    if request.best_of is not None and request.best_of > 1:
        return _bad("best_of above 1 is not available through a chat translation", "best_of")
    return None


def to_chat_request(request: CompletionRequest, *, lenient: bool = False) -> ChatRequest:
    """The chat turn that answers ``request``; 400 for what a chat turn cannot say
    (``lenient``: the first prompt instead, for a planning view)."""
    refusal = untranslatable(request)
    if refusal is not None and not lenient:
        raise refusal
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": "user", "content": request.text}],
    }
    for name in _PASSED:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return ChatRequest.model_validate(body)


def _extra(fields: ExtraFields | None) -> dict[str, Any]:
    data = fields.model_dump(mode="json") if fields is not None else {}
    data["request_type"] = REQUEST_TYPE
    return data


def completion_of(request: CompletionRequest, chat: ChatResponse) -> dict[str, Any]:
    """The ``text_completion`` object for a chat answer."""
    prefix = request.text if request.echo else ""
    usage = (
        chat.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
        if chat.usage
        else None
    )
    return {
        "id": "cmpl-" + chat.id.removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": chat.created,
        "model": chat.model,
        "choices": [
            {
                "text": prefix + (choice.message.content or ""),
                "index": choice.index,
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for choice in chat.choices
        ],
        "usage": usage,
        "extra_fields": _extra(chat.extra_fields),
    }
