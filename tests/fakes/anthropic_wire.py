"""Anthropic Messages API wire format, as the fake Anthropic upstream speaks it.

Taken from Anthropic's API reference and the official SDK's types: the request
checks (`validate_headers`, `validate_messages_request`) reject what the real
API rejects, with its error shape `{"type": "error", "error": {"type",
"message"}, "request_id"}`; `Reply` renders a `Message` or its SSE events
(`message_start`, `content_block_start`, `ping`, `content_block_delta`,
`content_block_stop`, `message_delta`, `message_stop`).

One strictness on purpose: the real API now combines consecutive same-role
turns, but older API versions rejected them and a translator that sends them
is sloppy; the fake rejects them (as it rejects a system role in `messages`).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ERROR_TYPES",
    "Reply",
    "error_body",
    "validate_headers",
    "validate_messages_request",
]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_PIECES = re.compile(r"\s*\S+|\s+$").findall

# status -> (error.type, message), as the API reference lists them.
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}  # fmt: skip

_REQUEST_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "output_config", "container", "inference_geo", "cache_control", "fallbacks",
})  # fmt: skip
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_SERVER_TOOL = re.compile(r"^(web_search|web_fetch|bash|text_editor|code_execution|computer)_\d{8}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def error_body(status: int, message: str | None = None, request_id: str = "") -> dict[str, Any]:
    kind, default = ERROR_TYPES.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"))  # fmt: skip
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message or default}}
    if request_id:
        body["request_id"] = request_id
    return body


class Rejection(Exception):
    """A request the API refuses: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _invalid(message: str) -> Rejection:
    return Rejection(400, message)


def validate_headers(headers: Mapping[str, str], api_key: str | None) -> None:
    """Check authentication and versioning like the API does (first problem wins)."""
    key = headers.get("x-api-key")
    if not key:
        raise Rejection(401, "x-api-key header is required")
    if api_key is not None and key != api_key:
        raise Rejection(401, "invalid x-api-key")
    if not headers.get("anthropic-version"):
        raise _invalid("anthropic-version: header is required")
    if "application/json" not in headers.get("content-type", ""):
        raise _invalid("Content-Type must be application/json")


def validate_messages_request(body: Any) -> None:
    """Raise `Rejection` for a body that `POST /v1/messages` would refuse."""
    if not isinstance(body, dict):
        raise _invalid("The request body is not valid JSON.")
    for name in body:
        if name not in _REQUEST_FIELDS:
            raise _invalid(f"{name}: Extra inputs are not permitted")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _invalid(f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise _invalid("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    for name, top in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= top):
            raise _invalid(f"{name}: Input should be less than or equal to {top:g}")
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) and s.strip() for s in stops)
    ):
        raise _invalid("stop_sequences: each stop sequence must contain non-whitespace")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise _invalid("metadata: Extra inputs are not permitted")
    _validate_system(body.get("system"))
    _validate_tools(body.get("tools"), body.get("tool_choice"))
    _validate_thinking(body)
    _validate_messages(body["messages"])


def _validate_thinking(body: dict[str, Any]) -> None:
    """Extended and adaptive thinking's constraints (Anthropic's thinking docs)."""
    thinking = body.get("thinking")
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        raise _invalid("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")  # fmt: skip
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        raise _invalid("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    if kind == "disabled":
        return
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")  # fmt: skip
        if budget >= body["max_tokens"]:
            raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    if body.get("temperature", 1) != 1:
        raise _invalid("`temperature` may only be set to 1 when thinking is enabled")
    if body.get("top_k") is not None:
        raise _invalid("`top_k` may not be set when thinking is enabled")
    if body.get("top_p", 1) < 0.95:
        raise _invalid("`top_p` must be greater than or equal to 0.95 when thinking is enabled")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
    messages = body.get("messages") or []
    if len(messages) >= 2 and isinstance(messages[-1].get("content"), list):
        results = any(b.get("type") == "tool_result" for b in messages[-1]["content"])
        answered = messages[-2].get("content")
        first = answered[0] if isinstance(answered, list) and answered else {}
        if results and first.get("type") not in ("thinking", "redacted_thinking"):
            raise _invalid("Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block.")  # fmt: skip


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _invalid(f"system.{i}: Input should be a text block")
        _check_text(block, f"system.{i}")


def _validate_tools(tools: Any, choice: Any) -> set[str]:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _invalid(f"tools.{i}: Input should be an object")
            if tool.get("type") not in (None, "custom"):  # a server tool (web_search_..., bash_...)
                if not _SERVER_TOOL.match(str(tool["type"])) or not isinstance(tool.get("name"), str):
                    raise _invalid(f"tools.{i}: Input tag {tool['type']!r} does not match any of the expected tags")  # fmt: skip
                names.add(tool["name"])
                continue
            extra = set(tool) - {"name", "description", "input_schema", "cache_control",
                                 "strict", "type", "input_examples"}  # fmt: skip
            if extra:
                raise _invalid(f"tools.{i}.{sorted(extra)[0]}: Extra inputs are not permitted")
            name = tool.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                raise _invalid(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")  # fmt: skip
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise _invalid(f"tools.{i}.input_schema.type: Input should be 'object'")
            if name in names:
                raise _invalid("tools: Tool names must be unique.")
            names.add(name)
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        allowed = {"auto": {"type", "disable_parallel_tool_use"}, "any": {"type", "disable_parallel_tool_use"},
                   "tool": {"type", "name", "disable_parallel_tool_use"}, "none": {"type"}}  # fmt: skip
        if kind not in allowed:
            raise _invalid("tool_choice: Input tag does not match any of the expected tags")
        if set(choice) - allowed[kind]:
            raise _invalid(f"tool_choice.{kind}: Extra inputs are not permitted")
        if kind == "tool" and choice.get("name") not in names:
            raise _invalid(f"tool_choice: Tool '{choice.get('name')}' not found in tools")
        if not tools and kind != "none":
            raise _invalid("tool_choice may only be specified while providing tools.")
    return names


def _check_text(block: Mapping[str, Any], where: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{where}.text: Field required")
    if not text:
        raise _invalid(f"{where}: text content blocks must be non-empty")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise _invalid(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _invalid(f"{where}: content must be a non-empty string or list")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{where}.{i}: Input should be a content block")
    return content


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: at least one message is required")
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    previous = None
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise _invalid(f"{where}: Input should be an object")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(
                f'{where}: Unexpected role "{role}". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
                if role == "system" else f"{where}.role: Input should be 'user' or 'assistant'"
            )  # fmt: skip
        if role == previous:
            raise _invalid(
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        previous = role
        blocks = _blocks(message.get("content"), f"{where}.content")
        answered: set[str] = set()
        seen_other = False
        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block["type"]
            if kind == "text":
                _check_text(block, at)
                seen_other = True
            elif kind == "image" and role == "user":
                _check_image(block.get("source"), at)
                seen_other = True
            elif kind == "document" and role == "user":
                source = block.get("source")
                if not isinstance(source, dict) or source.get("media_type") != "application/pdf":
                    raise _invalid(f"{at}.source: only PDF documents are accepted here")
                seen_other = True
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("input"), dict):
                    raise _invalid(f"{at}.input: Input should be a valid dictionary")
                if not block.get("id") or not block.get("name"):
                    raise _invalid(f"{at}: tool_use blocks need an id and a name")
                pending.add(block["id"])
            elif kind == "tool_result" and role == "user":
                if seen_other:
                    raise _invalid(f"{where}: tool_result blocks must come first in the content")
                if block.get("tool_use_id") not in pending:
                    raise _invalid(
                        f"{at}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message."
                    )
                answered.add(block["tool_use_id"])
                inner = block.get("content")
                if inner is not None and not isinstance(inner, str):
                    for k, part in enumerate(_blocks(inner, f"{at}.content")):
                        if part["type"] == "text":
                            _check_text(part, f"{at}.content.{k}")
                        elif part["type"] == "image":
                            _check_image(part.get("source"), f"{at}.content.{k}")
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                if kind == "thinking" and not isinstance(block.get("signature"), str):
                    raise _invalid(f"{at}.signature: Field required")
            else:
                raise _invalid(f"{at}: a {role} message cannot contain {kind!r} blocks")
        if role == "user" and pending:
            missing = sorted(pending - answered)
            if missing:
                raise _invalid(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
            pending = set()


def _check_image(source: Any, where: str) -> None:
    if not isinstance(source, dict):
        raise _invalid(f"{where}.source: Field required")
    if source.get("type") == "url":
        if not str(source.get("url", "")).startswith(("http://", "https://")):
            raise _invalid(f"{where}.source.url: must be an http(s) URL")
        return
    if source.get("type") != "base64":
        raise _invalid(f"{where}.source.type: Input should be 'base64' or 'url'")
    if source.get("media_type") not in _IMAGE_TYPES:
        raise _invalid(f"{where}.source.media_type: Input should be {', '.join(_IMAGE_TYPES)}")
    try:
        base64.b64decode(str(source.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{where}.source.data: invalid base64 data") from None


# ---------------------------------------------------------------- replies


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            parts.append("tool said " + (_text_of(inner) if inner is not None else ""))
        elif block.get("type") == "image":
            parts.append("[image]")
        elif block.get("type") == "document":
            parts.append("[document]")
    return " ".join(p for p in parts if p)


def _tokens(text: str) -> int:
    return len(text.split())


class Reply:
    """The successful answer to a validated request.

    The assistant echoes the last user turn ("echo: <text>", images as
    "[image]", tool results as "tool said <content>"). When the request has
    `tools` and that turn says "call_tool", it calls the first tool (the
    forced one under `tool_choice: tool`) with `{"text": <user text>}`; twice,
    in parallel, when it says "call_tools" and parallel use is not disabled.
    "refuse_me" ends with `stop_reason: refusal`. With `thinking` enabled the
    reply starts with a thinking block. `max_tokens` (in words) and
    `stop_sequences` cut the text like the real stop reasons. Usage counts words;
    text blocks marked with `cache_control` count as cache creation the first
    time the fake sees them and as cache reads after that (`cache` is the set
    of prefixes seen, shared by the server).
    """

    def __init__(self, body: dict[str, Any], ident: str, cache: set[str]) -> None:
        self.id = ident
        self.model = body["model"]
        last_user = next(m for m in reversed(body["messages"]) if m["role"] == "user")
        text = _text_of(last_user["content"])
        self.blocks: list[dict[str, Any]] = []
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
            self.blocks.append({"type": "thinking", "thinking": f"The user said {text}.",
                                "signature": "sig_" + ident[-12:]})  # fmt: skip
        self.stop_reason = "end_turn"
        self.stop_sequence: str | None = None
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        if tools and "call_tool" in text and choice.get("type") != "none":
            name = choice.get("name") if choice.get("type") == "tool" else tools[0]["name"]
            count = 2 if "call_tools" in text and not choice.get("disable_parallel_tool_use") else 1
            for n in range(count):
                self.blocks.append({"type": "tool_use", "id": f"toolu_{ident[-16:]}{n}",
                                    "name": name, "input": {"text": text, "n": n}})  # fmt: skip
            self.stop_reason = "tool_use"
        else:
            reply = "echo: " + text
            for stop in body.get("stop_sequences") or ():
                if stop in reply:
                    reply = reply[: reply.index(stop)]
                    self.stop_reason, self.stop_sequence = "stop_sequence", stop
            pieces: list[str] = _PIECES(reply)
            if len(pieces) > body["max_tokens"]:
                pieces = pieces[: body["max_tokens"]]
                self.stop_reason = "max_tokens"
            if "refuse_me" in text:
                self.stop_reason = "refusal"
            self.blocks.append({"type": "text", "text": "".join(pieces)})
        self.usage = _usage(body, self.blocks, cache)

    def message(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": self.blocks, "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence, "usage": self.usage,
        }  # fmt: skip

    def json(self) -> bytes:
        return _dumps(self.message()).encode()

    def events(self, *, error_after_start: dict[str, Any] | None = None) -> list[bytes]:
        """The SSE events of the streamed reply. `error_after_start`: an error object
        sent as an `error` event right after `message_start` (an overloaded stream)."""
        start = {**self.message(), "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**self.usage, "output_tokens": 1}}  # fmt: skip
        events = [_event("message_start", {"type": "message_start", "message": start})]
        if error_after_start is not None:
            events.append(_event("error", error_after_start))
            return events
        for index, block in enumerate(self.blocks):
            kind = block["type"]
            if kind == "text":
                opening: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in _PIECES(block["text"])]
            elif kind == "thinking":
                opening = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [{"type": "thinking_delta", "thinking": p} for p in _PIECES(block["thinking"])]  # fmt: skip
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
            else:
                opening = {
                    "type": "tool_use",
                    "id": block["id"],
                    "name": block["name"],
                    "input": {},
                }
                raw = _dumps(block["input"])
                cuts = [0, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
                deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": raw[a:b]} for a, b in itertools.pairwise(cuts)
                ]  # fmt: skip
            events.append(_event("content_block_start",
                                 {"type": "content_block_start", "index": index, "content_block": opening}))  # fmt: skip
            if index == 0:
                events.append(_event("ping", {"type": "ping"}))
            events.extend(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas)  # fmt: skip
            events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))  # fmt: skip
        delta = {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence}
        events.append(_event("message_delta", {"type": "message_delta", "delta": delta,
                                               "usage": {"output_tokens": self.usage["output_tokens"]}}))  # fmt: skip
        events.append(_event("message_stop", {"type": "message_stop"}))
        return events


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


def _usage(body: dict[str, Any], blocks: list[dict[str, Any]], cache: set[str]) -> dict[str, Any]:
    fresh = read = written = 0
    cached_prefix = ""
    system = body.get("system")
    segments: list[tuple[str, bool]] = []
    if isinstance(system, str):
        segments.append((system, False))
    elif isinstance(system, list):
        segments += [(b["text"], b.get("cache_control") is not None) for b in system]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            segments.append((content, False))
        else:
            segments += [(_text_of([b]), b.get("cache_control") is not None) for b in content]
    prefix = ""
    for text, marked in segments:
        prefix += text + "\x00"
        if marked:
            cached_prefix = prefix
    for text, _ in segments:
        fresh += _tokens(text)
    if cached_prefix:
        size = _tokens(cached_prefix.replace("\x00", " "))
        fresh -= size
        if cached_prefix in cache:
            read = size
        else:
            written = size
            cache.add(cached_prefix)
    output = sum(_tokens(b.get("text") or b.get("thinking") or _dumps(b.get("input", {})))
                 for b in blocks)  # fmt: skip
    return {
        "input_tokens": max(fresh, 0) + 1,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": max(output, 1),
    }
