"""Translation between OpenAI chat completions and Cohere's v2 chat API.

Pure functions, no I/O. Field names follow Cohere's v2 API reference and the
official SDK, cohere-ai/cohere-python (``V2ChatResponse``,
``V2ChatStreamResponse``, ``ChatMessageV2``, ``ToolV2``, ``Usage``).

Choices made where the two formats differ:

- Messages map one to one; developer messages become system messages.
- Cohere writes a ``tool_plan`` ("I will look up the weather") before its
  tool calls. It is returned as the assistant's ``content`` (as the
  ``tool-plan-delta`` events are streamed as content), and an assistant
  message with tool calls sends its content back as ``tool_plan``, so a
  tool round trip gives Cohere what it produced.
- ``tool_choice``: ``required`` is ``REQUIRED``, ``none`` is ``NONE``, ``auto``
  is Cohere's default (left out). Naming one function (which Cohere cannot do)
  sends only that tool, with ``REQUIRED``.
- ``top_p`` is ``p``, which Cohere bounds to [0.01, 0.99]: values outside are
  clamped rather than refused.
- Usage is what Cohere bills (``usage.billed_units``), falling back to
  ``usage.tokens``; ``usage.cached_tokens`` is reported in
  ``prompt_tokens_details.cached_tokens`` and not added again.
- A generation that ends in ``ERROR`` or ``TIMEOUT`` is a failure, not a
  response: the engine can then retry or fall back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from turnout.provider_api import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FailureClass,
    Message,
    ProviderError,
    ResponseMessage,
    TranslationError,
    Usage,
    function_tool,
    image_url,
)

__all__ = [
    "CohereStream",
    "GenerationFailed",
    "TranslationError",
    "failure_class",
    "finish_reason",
    "request_body",
    "response_from_cohere",
    "usage_from_cohere",
]

_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
_FAILED = {"ERROR": FailureClass.SERVER_ERROR, "TIMEOUT": FailureClass.TIMEOUT}
_TOO_LONG = re.compile(r"too many tokens|context (length|window)|maximum context", re.I)
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class GenerationFailed(ProviderError):
    """Cohere ended a generation with ``finish_reason`` ERROR or TIMEOUT."""


# --------------------------------------------------------------------------
# request: OpenAI -> Cohere
# --------------------------------------------------------------------------


def request_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The ``POST /v2/chat`` body for ``request`` (``stream`` is the caller's to set)."""
    if request.n is not None and request.n > 1:
        raise TranslationError("n: Cohere returns one choice per request")
    body: dict[str, Any] = {"model": model, "messages": messages_to_cohere(request.messages)}
    if request.tools:
        tools = [_tool(tool, number) for number, tool in enumerate(request.tools)]
        choice = request.tool_choice
        if isinstance(choice, dict):
            names = _chosen(choice)
            unknown = names - {t["function"]["name"] for t in tools}
            if unknown:
                raise TranslationError(f"tool_choice names tools not in tools: {sorted(unknown)}")
            tools = [t for t in tools if t["function"]["name"] in names]
            required = choice.get("type") == "function" or (
                (choice.get("allowed_tools") or {}).get("mode") == "required"
            )
            if required:
                body["tool_choice"] = "REQUIRED"
        elif choice in ("required", "none"):
            body["tool_choice"] = choice.upper()
        elif choice not in (None, "auto"):
            raise TranslationError(f"tool_choice {choice!r} is not auto, none or required")
        body["tools"] = tools
        if any((t.get("function") or {}).get("strict") for t in request.tools):
            body["strict_tools"] = True
    if request.output_limit is not None:
        body["max_tokens"] = request.output_limit
    if request.stop:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else request.stop
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["p"] = min(max(request.top_p, 0.01), 0.99)
    extra = request.model_extra or {}
    if isinstance(extra.get("top_k"), int):
        body["k"] = extra["top_k"]
    if request.seed is not None:
        body["seed"] = request.seed
    if request.frequency_penalty is not None:
        body["frequency_penalty"] = request.frequency_penalty
    if request.presence_penalty is not None:
        body["presence_penalty"] = request.presence_penalty
    fmt = request.response_format or {}
    kind = fmt.get("type")
    if kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        body["response_format"] = {"type": "json_object"}
        if isinstance(schema, dict):
            body["response_format"]["json_schema"] = schema
    elif kind not in (None, "text"):
        raise TranslationError(f"response_format type {kind!r} is not supported by Cohere")
    return body


def messages_to_cohere(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Cohere v2 messages for OpenAI messages."""
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.role
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _text(message.content, where)})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(message.content, where)})
        elif role == "assistant":
            text = _text(message.content, where)
            turn: dict[str, Any] = {"role": "assistant"}
            if message.tool_calls:
                turn["tool_calls"] = [
                    _tool_call(call, f"{where}.tool_calls[{n}]")
                    for n, call in enumerate(message.tool_calls)
                ]
                if text:
                    turn["tool_plan"] = text
            elif text:
                turn["content"] = text
            else:
                continue
            out.append(turn)
        elif role == "tool":
            if not message.tool_call_id:
                raise TranslationError(f"{where}: a tool message needs the tool_call_id it answers")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id,
                    "content": _tool_content(_text(message.content, where)),
                }
            )
        else:
            raise TranslationError(f"{where}: the legacy function role is not supported; use tool")
    return out


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise TranslationError(f"{where}.content[{number}]: only text is allowed here")
        texts.append(str(part.get(kind) or ""))
    return "".join(texts)


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for number, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            block: dict[str, Any] = {"url": image_url(part, f"{where}.content[{number}]")}
            if isinstance(image, dict) and image.get("detail") in ("auto", "low", "high"):
                block["detail"] = image["detail"]
            blocks.append({"type": "image_url", "image_url": block})
        else:
            raise TranslationError(
                f"{where}.content[{number}]: content part type {kind!r} is not supported by Cohere"
            )
    return blocks


def _tool_call(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    function = call.get("function")
    if call.get("type", "function") != "function" or not isinstance(function, dict):
        raise TranslationError(f"{where}: only function tool calls are supported by Cohere")
    ident, name = call.get("id"), function.get("name")
    if not isinstance(ident, str) or not ident or not isinstance(name, str) or not name:
        raise TranslationError(f"{where}: a tool call needs an id and a function name")
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        arguments = json.dumps(arguments)
    return {
        "id": ident,
        "type": "function",
        "function": {"name": name, "arguments": arguments or "{}"},
    }


def _tool_content(text: str) -> str | list[dict[str, Any]]:
    """A JSON object result as Cohere asks for it, anything else as a text block."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return text if isinstance(value, dict) else [{"type": "text", "text": text}]


def _tool(tool: Mapping[str, Any], number: int) -> dict[str, Any]:
    function = function_tool(tool, number, vendor="Cohere")
    spec: dict[str, Any] = {"name": function.name}
    if function.description:
        spec["description"] = function.description
    spec["parameters"] = function.parameters or dict(_EMPTY_PARAMETERS)
    return {"type": "function", "function": spec}


def _chosen(choice: Mapping[str, Any]) -> set[str]:
    if choice.get("type") == "function":
        return {str((choice.get("function") or {}).get("name"))}
    if choice.get("type") == "allowed_tools":
        tools = (choice.get("allowed_tools") or {}).get("tools") or []
        return {str((t.get("function") or {}).get("name")) for t in tools}
    raise TranslationError(f"tool_choice type {choice.get('type')!r} is not supported")


# --------------------------------------------------------------------------
# response: Cohere -> OpenAI
# --------------------------------------------------------------------------


def finish_reason(reason: Any) -> str:
    """OpenAI's finish_reason for a Cohere one that is not a failure."""
    return _FINISH.get(str(reason), "stop")


def check_finish(reason: Any, error: Any = None) -> None:
    """Raise ``GenerationFailed`` for the finish reasons that are failures."""
    failure = _FAILED.get(str(reason))
    if failure is not None:
        detail = f": {error}" if isinstance(error, str) and error else ""
        raise GenerationFailed(failure, f"Cohere ended the generation with {reason}{detail}")


def usage_from_cohere(usage: Any) -> Usage | None:
    """OpenAI usage for Cohere's ``usage`` (None when there is none)."""
    if not isinstance(usage, dict):
        return None
    counted = usage.get("billed_units")
    if not isinstance(counted, dict) or "input_tokens" not in counted:
        counted = usage.get("tokens")
    if not isinstance(counted, dict):
        return None
    prompt = _count(counted, "input_tokens")
    completion = _count(counted, "output_tokens")
    details: dict[str, Any] = {}
    if "cached_tokens" in usage:
        details["prompt_tokens_details"] = {
            "cached_tokens": min(_count(usage, "cached_tokens"), prompt)
        }
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        **details,
    )


def _count(values: Mapping[str, Any], key: str) -> int:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return 0
    return int(value)


def response_from_cohere(payload: Mapping[str, Any], *, model: str, created: int) -> ChatResponse:
    """An OpenAI chat completion for a ``V2ChatResponse``; raises ``GenerationFailed``."""
    check_finish(payload.get("finish_reason"))
    message = payload.get("message") if isinstance(payload.get("message"), dict) else {}
    assert isinstance(message, dict)
    texts, thoughts = [], []
    for item in message.get("content") or []:
        if isinstance(item, dict) and item.get("type") == "text":
            texts.append(str(item.get("text") or ""))
        elif isinstance(item, dict) and item.get("type") == "thinking":
            thoughts.append(str(item.get("thinking") or ""))
    calls = [_openai_call(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    plan = message.get("tool_plan") if calls else None
    text = "".join(texts) or (str(plan) if plan else "")
    extra = {"reasoning_content": "".join(thoughts)} if "".join(thoughts) else {}
    return ChatResponse(
        id=str(payload.get("id") or ""),
        created=created,
        model=model,
        choices=[
            Choice(
                message=ResponseMessage(
                    content=text or (None if calls else ""), tool_calls=calls or None, **extra
                ),
                finish_reason=finish_reason(payload.get("finish_reason")),
            )
        ],
        usage=usage_from_cohere(payload.get("usage")),
    )


def _openai_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    assert isinstance(function, dict)
    return {
        "id": str(call.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(function.get("name") or ""),
            "arguments": str(function.get("arguments") or "{}"),
        },
    }


class CohereStream:
    """Turns the events of one v2 chat stream into OpenAI chunks.

    ``message-end`` finishes it (with the finish reason and usage); a stream
    that ends before it is incomplete.
    """

    def __init__(self, *, model: str, created: int, fallback_id: str) -> None:
        self.model = model
        self.created = created
        self.id = fallback_id
        self.finished = False
        self.usage: Usage | None = None
        self._calls: dict[int, int] = {}

    def finish(self) -> list[ChatChunk]:
        """The usage-only chunk, when ``message-end`` reported usage."""
        usage = self.usage_chunk()
        return [usage] if usage is not None else []

    def feed(self, name: str, event: Mapping[str, Any]) -> list[ChatChunk]:
        """The chunks for one event (possibly none); raises ``GenerationFailed``."""
        kind = event.get("type") or name
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        assert isinstance(delta, dict)
        message = delta.get("message") if isinstance(delta.get("message"), dict) else {}
        assert isinstance(message, dict)
        if kind == "message-start":
            if event.get("id"):
                self.id = str(event["id"])
            return [self._chunk(Delta(role="assistant", content=""))]
        if kind in ("content-start", "content-delta"):
            content = message.get("content") if isinstance(message.get("content"), dict) else {}
            assert isinstance(content, dict)
            if content.get("thinking"):
                return [self._chunk(Delta(reasoning_content=str(content["thinking"])))]
            if content.get("text"):
                return [self._chunk(Delta(content=str(content["text"])))]
            return []
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            return [self._chunk(Delta(content=str(plan)))] if plan else []
        if kind == "tool-call-start":
            call = message.get("tool_calls")
            if not isinstance(call, dict):
                return []
            position = self._calls.setdefault(_index(event, len(self._calls)), len(self._calls))
            start = _openai_call(call)
            start["function"]["arguments"] = str(
                (call.get("function") or {}).get("arguments") or ""
            )
            return [self._chunk(Delta(tool_calls=[{"index": position, **start}]))]
        if kind == "tool-call-delta":
            call = message.get("tool_calls")
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            slot = self._calls.get(_index(event, len(self._calls) - 1))
            if not arguments or slot is None:
                return []
            part = {"index": slot, "function": {"arguments": str(arguments)}}
            return [self._chunk(Delta(tool_calls=[part]))]
        if kind == "message-end":
            self.finished = True
            check_finish(delta.get("finish_reason"), delta.get("error"))
            self.usage = usage_from_cohere(delta.get("usage"))
            reason = finish_reason(delta.get("finish_reason"))
            return [self._chunk(Delta(), reason)]
        return []  # content-end, tool-call-end, citations, debug

    def usage_chunk(self) -> ChatChunk | None:
        """The final usage-only chunk, if Cohere reported usage."""
        if self.usage is None:
            return None
        return ChatChunk(
            id=self.id, created=self.created, model=self.model, choices=[], usage=self.usage
        )

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
        )


def _index(event: Mapping[str, Any], default: int) -> int:
    index = event.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else default


# --------------------------------------------------------------------------
# errors: {"id": "...", "message": "..."}
# --------------------------------------------------------------------------


def failure_class(status: int, message: str) -> FailureClass:
    """The failure class of a Cohere error status and message."""
    if status in (401, 402, 403, 498):  # 402: no payment method; 498: invalid token
        return FailureClass.AUTH
    if status in (400, 413, 422) and _TOO_LONG.search(message):
        return FailureClass.CONTEXT_LENGTH
    if status == 499:
        return FailureClass.SERVER_ERROR  # Cohere says the request was cancelled
    return FailureClass.from_status(status)
