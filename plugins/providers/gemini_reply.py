"""Gemini's answers back into OpenAI form: responses, stream chunks, usage and
errors. Pure, like ``gemini_wire`` (which re-exports these names)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from turnout.provider_api import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FailureClass,
    ResponseMessage,
    Usage,
)

__all__ = [
    "GeminiStream",
    "block_reason",
    "call_id",
    "failure_class",
    "finish_reason",
    "response_from_gemini",
    "retry_delay",
    "usage_from_gemini",
]

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

_STATUS_CLASS = {
    "RESOURCE_EXHAUSTED": FailureClass.RATE_LIMITED,
    "UNAVAILABLE": FailureClass.OVERLOADED,
    "INTERNAL": FailureClass.SERVER_ERROR,
    "UNKNOWN": FailureClass.SERVER_ERROR,
    "DATA_LOSS": FailureClass.SERVER_ERROR,
    "ABORTED": FailureClass.SERVER_ERROR,
    "DEADLINE_EXCEEDED": FailureClass.TIMEOUT,
    "UNAUTHENTICATED": FailureClass.AUTH,
    "PERMISSION_DENIED": FailureClass.AUTH,
    # "free tier is not available in your country, enable billing" and
    # "user location is not supported": this key cannot be used, another target can.
    "FAILED_PRECONDITION": FailureClass.AUTH,
    "INVALID_ARGUMENT": FailureClass.BAD_REQUEST,
    "NOT_FOUND": FailureClass.NOT_FOUND,  # models/x is not found for API version v1beta
    "OUT_OF_RANGE": FailureClass.BAD_REQUEST,
    "UNIMPLEMENTED": FailureClass.BAD_REQUEST,
}
_KEY_REASONS = frozenset(
    {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED"}
)
_TOO_LONG = re.compile(
    r"input token count|exceeds the maximum number of tokens|context (length|window)", re.I
)

# --------------------------------------------------------------------------
# response: Gemini -> OpenAI
# --------------------------------------------------------------------------


def finish_reason(reason: str | None, has_call: bool) -> str | None:
    """OpenAI's finish_reason for a Gemini ``finishReason`` (None while unfinished)."""
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    mapped = _FINISH.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and has_call else mapped


def block_reason(payload: Mapping[str, Any]) -> str | None:
    """Why Gemini refused the prompt itself (``promptFeedback.blockReason``), if it did."""
    if payload.get("candidates"):
        return None
    feedback = payload.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    return str(reason) if reason else None


def usage_from_gemini(meta: Any) -> Usage | None:
    """OpenAI usage for Gemini's ``usageMetadata`` (None when there is none)."""
    if not isinstance(meta, dict) or not meta:
        return None
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    thoughts = _count(meta, "thoughtsTokenCount")
    completion = _count(meta, "candidatesTokenCount") + thoughts
    total = _count(meta, "totalTokenCount") or prompt + completion
    details: dict[str, Any] = {}
    if "cachedContentTokenCount" in meta:
        details["prompt_tokens_details"] = {
            "cached_tokens": _count(meta, "cachedContentTokenCount")
        }
    if "thoughtsTokenCount" in meta:
        details["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, **details)


def _count(meta: Mapping[str, Any], key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def call_id(response_id: str, candidate: int, position: int, name: str, args: Any) -> str:
    """A tool-call id: stable for one response, distinct across responses."""
    seed = f"{response_id}\x00{candidate}\x00{position}\x00{name}\x00"
    seed += json.dumps(args, sort_keys=True, default=str)
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def _tool_call(
    part: Mapping[str, Any], response_id: str, candidate: int, position: int
) -> dict[str, Any]:
    call = part["functionCall"]
    name = str(call.get("name") or "")
    args = call.get("args") or {}
    ident = call.get("id") or call_id(response_id, candidate, position, name, args)
    tool_call: dict[str, Any] = {
        "id": ident,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        tool_call["extra_content"] = {"google": {"thought_signature": signature}}
    return tool_call


def _parts(candidate: Mapping[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def response_from_gemini(
    payload: Mapping[str, Any], *, model: str, created: int, fallback_id: str
) -> ChatResponse:
    """An OpenAI chat completion for a ``GenerateContentResponse`` with candidates.

    :param model: the model name to report when Gemini gives no ``modelVersion``.
    :param fallback_id: the response id to use when Gemini gives no ``responseId``.
    """
    response_id = str(payload.get("responseId") or fallback_id)
    choices = []
    for position, candidate in enumerate(payload.get("candidates") or []):
        index = candidate.get("index", position)
        text: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in _parts(candidate):
            if "functionCall" in part:
                calls.append(_tool_call(part, response_id, index, len(calls)))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else text).append(part["text"])
        said, thought = "".join(text), "".join(thoughts)
        extra = {"reasoning_content": thought} if thought else {}
        message = ResponseMessage(
            content=said if said or not calls else None,
            tool_calls=calls or None,
            **extra,
        )
        choices.append(
            Choice(
                index=index,
                message=message,
                finish_reason=finish_reason(candidate.get("finishReason"), bool(calls)) or "stop",
            )
        )
    choices.sort(key=lambda choice: choice.index)
    return ChatResponse(
        id=f"chatcmpl-{response_id}",
        created=created,
        model=str(payload.get("modelVersion") or model),
        choices=choices,
        usage=usage_from_gemini(payload.get("usageMetadata")),
    )


class GeminiStream:
    """Turns the ``GenerateContentResponse`` events of one stream into OpenAI chunks.

    Each event holds the new text of each candidate; function calls arrive
    whole, so each becomes one tool-call delta with its full arguments.
    ``usageMetadata`` is cumulative: only the last one counts.
    """

    def __init__(self, *, model: str, created: int, fallback_id: str) -> None:
        self.model = model
        self.created = created
        self.response_id = fallback_id
        self.usage: Usage | None = None
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}
        self._first = True

    @property
    def finished(self) -> bool:
        """True once every candidate that began has sent its finishReason."""
        return bool(self._finished) and self._finished >= self._started

    def finish(self) -> list[ChatChunk]:
        """The usage-only chunk, when the stream reported usage."""
        usage = self.usage_chunk()
        return [usage] if usage is not None else []

    def feed(self, name: str, payload: Mapping[str, Any]) -> list[ChatChunk]:
        """The chunks for one event (possibly none); ``name`` is unused (Gemini's
        events are unnamed)."""
        if self._first:
            self._first = False
            self.response_id = str(payload.get("responseId") or self.response_id)
            self.model = str(payload.get("modelVersion") or self.model)
        usage = usage_from_gemini(payload.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        chunks = []
        for position, candidate in enumerate(payload.get("candidates") or []):
            index = candidate.get("index", position)
            fields: dict[str, Any] = {}
            if index not in self._started:
                self._started.add(index)
                fields["role"] = "assistant"
            text: list[str] = []
            thoughts: list[str] = []
            calls: list[dict[str, Any]] = []
            for part in _parts(candidate):
                if "functionCall" in part:
                    count = self._calls.get(index, 0)
                    call = _tool_call(part, self.response_id, index, count)
                    calls.append({"index": count, **call})
                    self._calls[index] = count + 1
                elif isinstance(part.get("text"), str):
                    (thoughts if part.get("thought") else text).append(part["text"])
            if "".join(text):
                fields["content"] = "".join(text)
            if "".join(thoughts):
                fields["reasoning_content"] = "".join(thoughts)
            if calls:
                fields["tool_calls"] = calls
            if fields:
                chunks.append(self._chunk([ChunkChoice(index=index, delta=Delta(**fields))]))
            reason = finish_reason(candidate.get("finishReason"), bool(self._calls.get(index)))
            if reason is not None and index not in self._finished:
                self._finished.add(index)
                chunks.append(
                    self._chunk([ChunkChoice(index=index, delta=Delta(), finish_reason=reason)])
                )
        return chunks

    def usage_chunk(self) -> ChatChunk | None:
        """The final usage-only chunk, if Gemini reported usage."""
        if self.usage is None:
            return None
        chunk = self._chunk([])
        chunk.usage = self.usage
        return chunk

    def _chunk(self, choices: list[ChunkChoice]) -> ChatChunk:
        return ChatChunk(
            id=f"chatcmpl-{self.response_id}",
            created=self.created,
            model=self.model,
            choices=choices,
        )


# --------------------------------------------------------------------------
# errors: Google's {"error": {"code", "message", "status", "details"}}
# --------------------------------------------------------------------------


def failure_class(status: int | None, error: Mapping[str, Any]) -> FailureClass:
    """The failure class of a Google API error, given the HTTP status if any.

    The canonical ``error.status`` decides, refined by what the body says: an
    invalid key (``API_KEY_INVALID``, sent as a 400 INVALID_ARGUMENT) is AUTH,
    and a too-long prompt (also INVALID_ARGUMENT) is CONTEXT_LENGTH.
    """
    code = error.get("code")
    if status is None and isinstance(code, int) and not isinstance(code, bool):
        status = code
    canonical = error.get("status")
    if isinstance(canonical, str) and canonical in _STATUS_CLASS:
        failure = _STATUS_CLASS[canonical]
    elif status is not None and 400 <= status <= 599:
        failure = FailureClass.from_status(status)
    else:
        failure = FailureClass.SERVER_ERROR
    if failure is FailureClass.BAD_REQUEST:
        if _reasons(error) & _KEY_REASONS:
            return FailureClass.AUTH
        message = error.get("message")
        if isinstance(message, str):
            if "api key" in message.lower():
                return FailureClass.AUTH
            if _TOO_LONG.search(message):
                return FailureClass.CONTEXT_LENGTH
    return failure


def _reasons(error: Mapping[str, Any]) -> set[str]:
    details = error.get("details")
    if not isinstance(details, list):
        return set()
    return {
        str(d["reason"])
        for d in details
        if isinstance(d, dict) and isinstance(d.get("reason"), str)
    }


def retry_delay(error: Mapping[str, Any]) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "34s"``), if any."""
    details = error.get("details")
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if 0 <= seconds < float("inf") else None
    return None
