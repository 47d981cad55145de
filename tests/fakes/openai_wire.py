"""OpenAI chat-completions wire format, as the fake upstream sends it.

Success bodies (`chat.completion`, `chat.completion.chunk` SSE events, the model
list), OpenAI error objects and the request checks; the bytes, pauses and
connection endings are `tests.fakes.upstream`'s.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["Completion", "error_object", "model_list", "validate_chat_request"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_PIECES = re.compile(r"\s*\S+|\s+$").findall


def _json(value: Any) -> bytes:
    return _dumps(value).encode()


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


def model_list(models: Iterable[str]) -> bytes:
    """The `GET /v1/models` body."""
    data = [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"} for m in models
    ]
    return _json({"object": "list", "data": data})
