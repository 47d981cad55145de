"""OpenAI chat-completions wire format, as the fake upstream sends it.

Success bodies (`chat.completion`, `chat.completion.chunk` SSE events, the model
list), OpenAI error objects, and `deliver()`, which turns a body and a `Fault`
into the exact bytes, pauses and connection ending that go on the wire.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from tests.fakes.faults import Fault

__all__ = [
    "Completion",
    "Reply",
    "deliver",
    "error_object",
    "error_reply",
    "model_list",
    "validate_chat_request",
]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_PIECES = re.compile(r"\s*\S+|\s+$").findall


def _json(value: Any) -> bytes:
    return _dumps(value).encode()


_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}  # fmt: skip

# status -> (type, code, message), as api.openai.com words them.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    408: ("timeout", None, "Request timed out."),
    409: ("conflict", None, "Conflict."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None,
          "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    504: ("timeout", None, "Gateway timeout."),
}  # fmt: skip


def error_object(
    status: int, message: str | None = None, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's `{"error": {message, type, param, code}}` for an HTTP status."""
    default_type = "invalid_request_error" if status < 500 else "server_error"
    etype, ecode, emessage = _ERRORS.get(status, (default_type, None, f"HTTP {status}"))
    return {
        "error": {
            "message": message or emessage,
            "type": etype,
            "param": param,
            "code": code or ecode,
        }
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict)).strip()
    return ""


def _first_tool_name(tools: list[Any]) -> str:
    tool = tools[0] if isinstance(tools[0], dict) else {}
    spec = tool.get("function") or tool.get("custom") or tool
    return str(spec.get("name", "tool")) if isinstance(spec, dict) else "tool"


_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def _reply_pieces(request: dict[str, Any], reply_words: int | None) -> list[str]:
    """The reply, "echo: <last user text>", as words that keep their leading space."""
    messages = request["messages"]
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = user[-1] if user else messages[-1]
    text = _text_of(last.get("content")) if isinstance(last, dict) else ""
    pieces: list[str] = _PIECES("echo: " + text)
    if reply_words is not None:
        filler = itertools.cycle(_FILLER)
        while len(pieces) < reply_words:
            pieces.append(" " + next(filler))
        del pieces[max(reply_words, 1) :]
    return pieces


def _wants_tool_call(request: dict[str, Any]) -> bool:
    last = request["messages"][-1]
    return bool(request.get("tools")) and isinstance(last, dict) and last.get("role") == "user" \
        and "call_tool" in _text_of(last.get("content"))  # fmt: skip


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def validate_chat_request(body: Any) -> dict[str, Any] | None:
    """None when `body` is a usable chat request, else an OpenAI 400 error object."""
    if not isinstance(body, dict):
        return error_object(400, "The request body must be a JSON object.")
    for name in ("model", "messages"):
        if name not in body:
            return error_object(
                400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
            )
    if not isinstance(body["model"], str):
        return error_object(400, "Invalid type for 'model': expected a string.", "model")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return error_object(
            400, "Invalid 'messages': empty array or not an array.", "messages", "empty_array"
        )
    return None


class Completion:
    """One successful completion, rendered as JSON or as SSE events."""

    def __init__(self, request: dict[str, Any], ident: str, reply_words: int | None) -> None:
        self.request = request
        self.id = ident
        self.model: str = request["model"]
        self.created = int(time.time())
        self.prompt_tokens = sum(
            len(_text_of(m.get("content")).split())
            for m in request["messages"]
            if isinstance(m, dict)
        )
        self.tool_name = _first_tool_name(request["tools"]) if _wants_tool_call(request) else None
        self.pieces: list[str] = []
        self.finish_reason = "tool_calls" if self.tool_name else "stop"
        if self.tool_name is None:
            self.pieces = _reply_pieces(request, reply_words)
            limit = request.get("max_completion_tokens") or request.get("max_tokens")
            if isinstance(limit, int) and 0 < limit < len(self.pieces):
                del self.pieces[limit:]
                self.finish_reason = "length"
        self.completion_tokens = len(self.pieces) if self.pieces else 2
        self.call_id = "call_" + ident[-24:]

    def json(self) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if self.tool_name:
            message["tool_calls"] = [{
                "id": self.call_id, "type": "function",
                "function": {"name": self.tool_name, "arguments": "{}"},
            }]  # fmt: skip
        else:
            message["content"] = "".join(self.pieces)
        message["annotations"] = []
        return _json({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": self.finish_reason}],
            "usage": _usage(self.prompt_tokens, self.completion_tokens),
            "service_tier": "default", "system_fingerprint": "fp_fake",
        })  # fmt: skip

    def events(self) -> list[bytes]:
        """SSE events, each `data: ...\\n\\n`, ending with `data: [DONE]`."""
        options = self.request.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        head = (
            f'data: {{"id":{_dumps(self.id)},"object":"chat.completion.chunk",'
            f'"created":{self.created},"model":{_dumps(self.model)},'
            '"service_tier":"default","system_fingerprint":"fp_fake","choices":'
        )
        tail = ',"usage":null}\n\n' if include_usage else "}\n\n"

        def chunk(delta: str, finish: str | None = None) -> bytes:
            choice = f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":'
            return (head + choice + _dumps(finish) + "}]" + tail).encode()

        if self.tool_name:
            call = {"index": 0, "id": self.call_id, "type": "function",
                    "function": {"name": self.tool_name, "arguments": ""}}  # fmt: skip
            first = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
            events = [chunk(_dumps(first))] + [
                chunk(_dumps({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
                for part in ("{", "}")
            ]
        else:
            events = [chunk('{"role":"assistant","content":"","refusal":null}')]
            events += [chunk('{"content":' + _dumps(piece) + "}") for piece in self.pieces]
        events.append(chunk("{}", self.finish_reason))
        if include_usage:
            usage = _dumps(_usage(self.prompt_tokens, self.completion_tokens))
            events.append((head + '[],"usage":' + usage + "}\n\n").encode())
        events.append(b"data: [DONE]\n\n")
        return events


def _head(status: int, content_type: str, length: int | None, extra: Iterable[str] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {content_type}"]
    lines.append("transfer-encoding: chunked" if length is None else f"content-length: {length}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


DONE, CLOSE, RESET, STALL = "done", "close", "reset", "stall"
_SETTLE = 0.005  # lets the client read a partial response before the connection ends


class Reply:
    """What to write and after which pause, then how the exchange ends: DONE
    (keep the connection for the next request), CLOSE (FIN), RESET (RST) or
    STALL (stay open and silent)."""

    __slots__ = ("end", "steps")

    def __init__(self, steps: list[tuple[float, bytes]], end: str = DONE) -> None:
        self.steps = deque(steps)
        self.end = end


def model_list(models: Iterable[str]) -> bytes:
    """The `GET /v1/models` body."""
    data = [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"} for m in models
    ]
    return _json({"object": "list", "data": data})


def error_reply(
    status: int,
    payload: Any,
    *,
    request_id: str,
    keep_alive: bool = True,
    latency: float = 0.0,
    retry_after: float | str | None = None,
) -> Reply:
    """An error response; `payload` is an error object, or str/bytes sent verbatim."""
    if isinstance(payload, bytes):
        body = payload
    else:
        body = payload.encode() if isinstance(payload, str) else _json(payload)
    extra = [f"x-request-id: req_{request_id}"]
    if retry_after is not None:
        extra.append(f"retry-after: {retry_after}")
    if not keep_alive:
        extra.append("connection: close")
    head = _head(status, "application/json", len(body), extra)
    return Reply([(latency, head + body)], DONE if keep_alive else CLOSE)


def deliver(
    fault: Fault | None,
    body: bytes,
    events: list[bytes] | None = None,
    *,
    request_id: str,
    keep_alive: bool = True,
    latency: float = 0.0,
    chunk_delay: float = 0.0,
) -> Reply:
    """Send the JSON `body`, or the SSE `events` when streaming, as `fault` says.

    `latency` passes before the first byte (a `delay` fault replaces it) and
    `chunk_delay` between SSE events (a `chunk_delay` fault replaces it).
    """
    kind = fault.kind if fault else "ok"
    wait = fault.seconds if fault and kind == "delay" else latency
    end = DONE if keep_alive else CLOSE
    if fault and kind == "status":
        payload = error_object(fault.code) if fault.body is None else fault.body
        return error_reply(
            fault.code, payload, request_id=request_id, keep_alive=keep_alive,
            latency=latency, retry_after=fault.retry_after,
        )  # fmt: skip
    if kind == "reset":
        return Reply([(wait, b"")], RESET)
    if kind == "error_body_200":
        body = _json(error_object(500))
        if events is not None:
            events = [b"data: " + body + b"\n\n"]
    elif kind == "malformed_json":
        if events is not None:
            events = [events[0][: len(events[0]) // 2] + b"\n\n", b"data: [DONE]\n\n"]
        else:
            body = body[: len(body) // 2] or b"{"

    extra = [f"x-request-id: req_{request_id}"]
    if not keep_alive:
        extra.append("connection: close")
    if events is None:
        head = _head(200, "application/json", len(body), extra)
        half = head + body[: len(body) // 2]
        if kind == "reset_mid_body":
            return Reply([(wait, half), (_SETTLE, b"")], RESET)
        if kind == "truncated_stream":
            return Reply([(wait, half), (_SETTLE, b"")], CLOSE)
        if kind == "stall_after_first":
            return Reply([(wait, half)], STALL)
        return Reply([(wait, head + body)], end)

    extra.append("cache-control: no-cache")
    head = _head(200, "text/event-stream; charset=utf-8", None, extra)
    if kind in ("reset_mid_body", "truncated_stream"):
        cut = events[2]  # mid-event: the chunk header promises more than is sent
        partial = b"%x\r\n%s" % (len(cut), cut[: len(cut) // 2])
        sent = head + b"".join(_http_chunk(e) for e in events[:2]) + partial
        return Reply([(wait, sent), (_SETTLE, b"")], RESET if kind == "reset_mid_body" else CLOSE)
    if kind == "stall_after_first":
        return Reply([(wait, head + _http_chunk(events[0]))], STALL)
    gap = fault.seconds if fault and kind == "chunk_delay" else chunk_delay
    if gap <= 0:
        return Reply([(wait, head + b"".join(map(_http_chunk, events)) + b"0\r\n\r\n")], end)
    steps = [(wait, head)] + [(gap, _http_chunk(e)) for e in events]
    steps[-1] = (gap, steps[-1][1] + b"0\r\n\r\n")
    return Reply(steps, end)
