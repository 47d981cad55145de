"""Anthropic Messages API → OpenAI chat completions: replies, stream events,
stop reasons, usage and errors, as pure functions.

The other half of ``anthropic_wire`` (which re-exports everything here); see
its docstring for the translation decisions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from turnout.provider_api import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FailureClass,
    ProviderError,
    ResponseMessage,
    Usage,
)

__all__ = [
    "FINISH_REASONS",
    "StreamTranslator",
    "chat_response",
    "classify_error",
    "finish_reason",
    "usage",
]

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic ``stop_reason`` → OpenAI ``finish_reason``. ``pause_turn`` (a server
tool paused a long turn) maps to ``stop``: the turn is over for this request,
and the caller may send the reply back to continue it."""


# --------------------------------------------------------------------------
# response: Anthropic → OpenAI
# --------------------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str | None:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason`` (unknown → ``stop``)."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def usage(raw: Mapping[str, Any]) -> Usage:
    """OpenAI usage from Anthropic's, counting cached input once.

    Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's
    ``prompt_tokens`` includes them, with reads in ``cached_tokens``.
    """
    fresh = _count(raw.get("input_tokens"))
    read = _count(raw.get("cache_read_input_tokens"))
    written = _count(raw.get("cache_creation_input_tokens"))
    output = _count(raw.get("output_tokens"))
    prompt = fresh + read + written
    fields: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read, "cache_creation_tokens": written},
    }
    details = raw.get("output_tokens_details")
    if isinstance(details, Mapping) and details.get("thinking_tokens") is not None:
        fields["completion_tokens_details"] = {
            "reasoning_tokens": _count(details["thinking_tokens"])
        }
    return Usage(**fields)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_response(message: Mapping[str, Any], *, created: int = 0) -> ChatResponse:
    """A ``chat.completion`` for an Anthropic ``Message``.

    :raises ProviderError: SERVER_ERROR when ``message`` is not a Message.
    """
    content = message.get("content")
    if message.get("type") != "message" or not isinstance(content, list):
        raise ProviderError(
            FailureClass.SERVER_ERROR, "upstream answered with JSON that is not a message"
        )
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
            thinking_blocks.append(dict(block))
        elif kind == "redacted_thinking":
            thinking_blocks.append(dict(block))
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
        # server tool blocks (web search, code execution, ...) have no OpenAI form
    fields: dict[str, Any] = {}
    if reasoning:
        fields["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        fields["thinking_blocks"] = thinking_blocks
    reply = ResponseMessage(
        content="".join(texts) if texts or not tool_calls else None,
        tool_calls=tool_calls or None,
        **fields,
    )
    raw_usage = message.get("usage")
    return ChatResponse(
        id=str(message.get("id", "")),
        created=created,
        model=str(message.get("model", "")),
        choices=[Choice(message=reply, finish_reason=finish_reason(message.get("stop_reason")))],
        usage=usage(raw_usage) if isinstance(raw_usage, Mapping) else None,
    )


def _tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False, separators=(",", ":"))
    function = {"name": block.get("name", ""), "arguments": arguments}
    return {"id": block.get("id", ""), "type": "function", "function": function}


# --------------------------------------------------------------------------
# streams: Anthropic events → OpenAI chunks
# --------------------------------------------------------------------------


class StreamTranslator:
    """Turns Anthropic stream events into ``chat.completion.chunk`` objects.

    Feed each event's name and decoded data to ``feed``; it returns the chunks
    to send (often none). The role chunk comes just before the first content,
    not at ``message_start``, so an ``overloaded_error`` event right after
    ``message_start`` fails the attempt before any chunk (and the engine can
    fall back) rather than interrupting a started stream. Text, thinking
    and tool input deltas give content, ``reasoning_content`` and ``tool_calls``
    chunks (a tool call's first chunk has its ``index``, ``id``, ``type`` and
    ``function.name``, later ones only ``function.arguments`` fragments);
    ``message_delta`` gives the ``finish_reason`` chunk; ``message_stop`` the
    final usage-only chunk (``choices: []``) and sets ``finished``. ``ping`` and
    unknown events are ignored; an ``error`` event raises ``ProviderError``.
    """

    def __init__(self, *, created: int = 0, model: str = "") -> None:
        self.created = created
        self.id = ""
        self.model = model
        self.finished = False
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._tool_calls = 0
        self._started = False

    def _chunk(self, delta: Delta | None, finish: str | None = None) -> ChatChunk:
        choices = [] if delta is None else [ChunkChoice(delta=delta, finish_reason=finish)]
        return ChatChunk(id=self.id, created=self.created, model=self.model, choices=choices)

    def finish(self) -> list[ChatChunk]:
        """Nothing: the usage chunk came with ``message_stop``."""
        return []

    def feed(self, name: str, data: Mapping[str, Any]) -> list[ChatChunk]:
        """The chunks for one event. ``name`` is the SSE event name (or ``data.type``)."""
        handler = getattr(self, "_on_" + name, None)
        if handler is None:
            return []  # ping, and event types added after this was written
        result: list[ChatChunk] = handler(data)
        if result and not self._started:
            self._started = True
            result.insert(0, self._chunk(Delta(role="assistant", content="")))
        return result

    def _on_message_start(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        message = data.get("message")
        if isinstance(message, Mapping):
            self.id = str(message.get("id") or self.id)
            self.model = str(message.get("model") or self.model)
            if isinstance(message.get("usage"), Mapping):
                self._usage.update(message["usage"])
        return []  # the role chunk waits for content: an error before it can still fall back

    def _on_content_block_start(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        block = data.get("content_block")
        if not isinstance(block, Mapping):
            return []
        state = dict(block)
        self._blocks[_index(data)] = state
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._chunk(Delta(content=block["text"]))]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk(Delta(reasoning_content=block["thinking"]))]
        if kind == "tool_use":
            state["call_index"] = self._tool_calls
            self._tool_calls += 1
            call = {
                "index": state["call_index"],
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            chunks = [self._chunk(Delta(tool_calls=[call]))]
            if block.get("input"):  # the API sends {} and streams the input; be lenient
                arguments = json.dumps(block["input"], separators=(",", ":"))
                state["streamed"] = True
                chunks.append(self._arguments(state["call_index"], arguments))
            return chunks
        return []

    def _arguments(self, index: int, fragment: str) -> ChatChunk:
        call = {"index": index, "function": {"arguments": fragment}}
        return self._chunk(Delta(tool_calls=[call]))

    def _on_content_block_delta(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        delta = data.get("delta")
        state = self._blocks.get(_index(data))
        if not isinstance(delta, Mapping):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk(Delta(content=delta["text"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            if state is not None:
                state["thinking"] = state.get("thinking", "") + delta["thinking"]
            return [self._chunk(Delta(reasoning_content=delta["thinking"]))]
        if kind == "signature_delta" and state is not None:
            state["signature"] = state.get("signature", "") + str(delta.get("signature", ""))
            return []
        fragment = delta.get("partial_json")
        if kind == "input_json_delta" and fragment and state and "call_index" in state:
            return [] if state.get("streamed") else [self._arguments(state["call_index"], fragment)]
        return []

    def _on_content_block_stop(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        state = self._blocks.pop(_index(data), None)
        if state is None or state.get("type") not in ("thinking", "redacted_thinking"):
            return []
        block = {k: v for k, v in state.items() if k in ("type", "thinking", "signature", "data")}
        return [self._chunk(Delta(thinking_blocks=[block]))]

    def _on_message_delta(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        if isinstance(data.get("usage"), Mapping):
            self._usage.update({k: v for k, v in data["usage"].items() if v is not None})
        delta = data.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, Mapping) else None
        return [self._chunk(Delta(), finish_reason(stop) or "stop")]

    def _on_message_stop(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        self.finished = True
        final = self._chunk(None)
        final.usage = usage(self._usage)
        return [final]

    def _on_error(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        error = data.get("error")
        if not isinstance(error, Mapping):
            error = {"message": "upstream sent an error event"}
        message = error.get("message") or "upstream sent an error event"
        raise ProviderError(classify_error(None, error), str(message))


def _index(data: Mapping[str, Any]) -> int:
    index = data.get("index")
    return index if isinstance(index, int) else -1


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

# error.type → class, for errors without an HTTP status (stream error events)
# and to refine a status (a 402 billing_error is a key problem, not the caller's).
_ERROR_TYPES: Mapping[str, FailureClass] = {
    "invalid_request_error": FailureClass.BAD_REQUEST,
    "authentication_error": FailureClass.AUTH,
    "permission_error": FailureClass.AUTH,
    "billing_error": FailureClass.AUTH,  # out of credit: unusable until someone pays
    "not_found_error": FailureClass.NOT_FOUND,
    "request_too_large": FailureClass.CONTEXT_LENGTH,
    "rate_limit_error": FailureClass.RATE_LIMITED,
    "timeout_error": FailureClass.TIMEOUT,
    "api_error": FailureClass.SERVER_ERROR,
    "overloaded_error": FailureClass.OVERLOADED,
}

# How the API words a prompt that does not fit: "prompt is too long: 208656
# tokens > 200000 maximum", "input length and `max_tokens` exceed context limit".
_CONTEXT_PHRASES = ("prompt is too long", "exceed context limit", "context window")


def classify_error(status: int | None, error: Mapping[str, Any]) -> FailureClass:
    """The failure class of an Anthropic error object, given the HTTP status if any.

    The status decides, refined by ``error.type`` where the status alone would
    blame the caller (402 ``billing_error`` → AUTH, 413 ``request_too_large`` →
    CONTEXT_LENGTH, a 400 whose message says the prompt is too long →
    CONTEXT_LENGTH) or where the type is more precise (500 ``overloaded_error``
    → OVERLOADED). Without a status (an ``error`` event mid-stream), the type
    decides; an unknown type is SERVER_ERROR.
    """
    kind = _type_of(error)
    by_type = _ERROR_TYPES.get(kind or "")
    if status is None:
        failure = by_type or FailureClass.SERVER_ERROR
    else:
        failure = FailureClass.from_status(status)
        refines = by_type is not None and failure is FailureClass.BAD_REQUEST
        if refines or (failure is FailureClass.SERVER_ERROR and by_type is FailureClass.OVERLOADED):
            failure = by_type or failure
    if failure is FailureClass.BAD_REQUEST:
        message = error.get("message")
        if isinstance(message, str) and any(p in message.lower() for p in _CONTEXT_PHRASES):
            return FailureClass.CONTEXT_LENGTH
    return failure


def _type_of(error: Mapping[str, Any]) -> str | None:
    kind = error.get("type")
    return kind if isinstance(kind, str) and kind else None
