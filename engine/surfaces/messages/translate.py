"""Anthropic Messages ⇄ OpenAI chat completions, for targets that speak chat.

Pure functions. ``to_chat_request`` makes the chat request a Messages request
means (it is also the request's planning view: routing, budgets, guardrails
and the cache read it); ``message_of`` turns a chat answer back into a
``Message``; ``chat_of_message`` reads a native ``Message`` as a chat answer
for the post-response hooks (cache, output guardrails).

What a chat target cannot be given is a ``TurnoutError`` 400 naming the field
(``untranslatable`` lists the fields; the surface decides whether a native
target can take the request instead):

- server tools (``web_search_…``, ``bash_…``, ``code_execution_…``, any tool
  with a ``type`` other than ``custom``) and ``mcp_servers`` / ``container``;
- documents other than base64 PDFs and plain text;
- images in a tool result become a user turn right after the tool answers.

``thinking`` becomes ``reasoning_effort`` (budget ≤ 2048 low, ≤ 8192 medium,
else high; adaptive: medium); ``stop_sequences`` becomes ``stop``;
``metadata.user_id`` becomes ``user``; ``tool_choice`` maps type by type
(``any`` → ``required``), ``disable_parallel_tool_use`` → ``parallel_tool_calls:
false``; ``top_k`` and ``cache_control`` have no chat equivalent and are left
out (a native target keeps them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from turnout.errors import TurnoutError
from turnout.surfaces.messages.wire import MessageParam, MessagesRequest
from turnout.wire.chat import ChatRequest, ChatResponse, Usage

__all__ = [
    "STOP_REASONS",
    "chat_of_message",
    "message_of",
    "messages_usage",
    "stop_reason",
    "to_chat_request",
    "untranslatable",
    "usage_of",
]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""OpenAI ``finish_reason`` → Anthropic ``stop_reason``."""

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_NATIVE_ONLY = ("mcp_servers", "container", "context_management")


def _bad(message: str, param: str) -> TurnoutError:
    return TurnoutError(message, code="invalid_request", param=param)


def untranslatable(request: MessagesRequest | Any) -> list[str]:
    """The fields a chat target cannot be given (server tools and the like)."""
    found = [name for name in _NATIVE_ONLY if (request.model_extra or {}).get(name)]
    if getattr(request, "fallbacks", None) and request.turnout_fallbacks is None:
        found.append("fallbacks (Anthropic's server-side fallback)")
    for i, tool in enumerate(request.tools or ()):
        if tool.get("type") not in (None, "custom"):
            found.append(f"tools[{i}] ({tool.get('type')})")
    return found


def stop_reason(finish: str | None) -> str:
    return STOP_REASONS.get(finish or "stop", "end_turn")


def _effort(thinking: Mapping[str, Any] | None) -> str | None:
    if not thinking:
        return None
    kind = thinking.get("type")
    if kind == "adaptive":
        return "medium"
    if kind != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) else 0
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def _text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for i, block in enumerate(content or ()):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _bad(f"{where}[{i}]: only text blocks are allowed here", f"{where}[{i}]")
        parts.append({"type": "text", "text": block["text"]})
    return parts


def _image(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise _bad(f"{where}: an image needs a source", where)
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _bad(f"{where}: image source {source.get('type')!r} cannot be translated", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "text" and isinstance(source, Mapping):
        return {"type": "text", "text": str(source.get("data", ""))}
    if (
        kind == "base64"
        and isinstance(source, Mapping)
        and source.get("media_type") == "application/pdf"
    ):
        file: dict[str, Any] = {"file_data": f"data:application/pdf;base64,{source.get('data')}"}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    raise _bad(
        f"{where}: only base64 PDF and plain-text documents can be sent to this target", where
    )


def _tool_result(block: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[Any]]:
    """The ``tool`` message for a tool_result, and its images (for a user turn after)."""
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    for i, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image":
            images.append(_image(part, f"{where}.content[{i}]"))
        else:
            raise _bad(f"{where}.content[{i}]: {kind!r} cannot be a chat tool result", where)
    text = "\n".join(texts)
    if block.get("is_error"):
        text = "Error: " + text if text else "Error"
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}
    return message, images


def _user(turn: MessageParam, where: str) -> list[dict[str, Any]]:
    if isinstance(turn.content, str):
        return [{"role": "user", "content": turn.content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(turn.content):
        here = f"{where}.content[{i}]"
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block, here))
        elif kind == "document":
            parts.append(_document(block, here))
        elif kind == "tool_result":
            message, images = _tool_result(block, here)
            out.append(message)
            parts.extend(images)
        else:
            raise _bad(f"{here}: a {kind!r} block cannot be sent to this target", here)
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(turn: MessageParam, where: str) -> dict[str, Any]:
    if isinstance(turn.content, str):
        return {"role": "assistant", "content": turn.content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(turn.content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {"name": str(block.get("name", "")), "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a chat target cannot take them back; its own reasoning is fresh
        else:
            here = f"{where}.content[{i}]"
            raise _bad(f"{here}: a {kind!r} block cannot be sent to this target", here)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: Mapping[str, Any], i: int) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"tools[{i}]: a tool needs a name", f"tools[{i}]")
    function: dict[str, Any] = {
        "name": name,
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Mapping[str, Any]) -> tuple[Any, bool | None]:
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad(f"tool_choice type {kind!r} is not one of auto, any, tool, none", "tool_choice")


def to_chat_request(request: MessagesRequest, *, lenient: bool = False) -> ChatRequest:
    """The chat request ``request`` means; 400 naming the field for what chat
    cannot say (``untranslatable``, unknown blocks, bad sources). ``lenient``:
    leave the untranslatable out instead (a planning view only)."""
    refused = untranslatable(request)
    if refused and not lenient:
        raise _bad(
            f"{refused[0]} needs a target that speaks the Messages API itself; "
            "this route's target speaks chat completions",
            refused[0].split(" ")[0],
        )
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _text_parts(request.system, "system")})
    for i, turn in enumerate(request.messages):
        where = f"messages[{i}]"
        if turn.role == "user":
            messages.extend(_user(turn, where))
        else:
            messages.append(_assistant(turn, where))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    for name in ("temperature", "top_p", "stream"):
        value = getattr(request, name, None)
        if value is not None:
            body[name] = value
    if request.turnout_fallbacks:
        body["fallbacks"] = request.turnout_fallbacks
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    user = (request.metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        body["user"] = user
    tools = [
        _tool(tool, i)
        for i, tool in enumerate(request.tools or ())
        if tool.get("type") in (None, "custom")
    ]
    if tools:
        body["tools"] = tools
    if request.tool_choice and tools:
        choice, parallel = _tool_choice(request.tool_choice)
        body["tool_choice"] = choice
        if parallel is not None:
            body["parallel_tool_calls"] = parallel
    effort = _effort(request.thinking)
    if effort is not None:
        body["reasoning_effort"] = effort
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    return ChatRequest.model_validate(body)


# --------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------


def messages_usage(usage: Usage | None) -> dict[str, Any]:
    """Anthropic usage from OpenAI's: ``input_tokens`` excludes cache reads and
    writes, which are ``cache_read_input_tokens`` / ``cache_creation_input_tokens``."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    details = (usage.model_extra or {}).get("prompt_tokens_details") or {}
    read = details.get("cached_tokens") or 0
    written = details.get("cache_creation_tokens") or 0
    return {
        "input_tokens": max(usage.prompt_tokens - read - written, 0),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def usage_of(raw: Any) -> Usage | None:
    """OpenAI usage from Anthropic's (prompt tokens count cache reads and writes)."""
    if not isinstance(raw, Mapping):
        return None

    def count(name: str) -> int:
        value = raw.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    read, written = count("cache_read_input_tokens"), count("cache_creation_input_tokens")
    prompt = count("input_tokens") + read + written
    output = count("output_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        prompt_tokens_details={"cached_tokens": read, "cache_creation_tokens": written},
    )


def message_of(chat: ChatResponse, message_id: str) -> dict[str, Any]:
    """The ``Message`` for a chat answer (its first choice)."""
    choice = chat.choices[0] if chat.choices else None
    content: list[dict[str, Any]] = []
    finish = None
    if choice is not None:
        message = choice.message
        extra = message.model_extra or {}
        blocks = extra.get("thinking_blocks")
        if isinstance(blocks, list) and blocks:
            content.extend(dict(b) for b in blocks if isinstance(b, Mapping))
        elif isinstance(extra.get("reasoning_content"), str) and extra["reasoning_content"]:
            content.append(
                {"type": "thinking", "thinking": extra["reasoning_content"], "signature": ""}
            )
        text = message.content if message.content is not None else message.refusal
        if text:
            content.append({"type": "text", "text": text})
        for call in message.tool_calls or ():
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                arguments = {"_raw": function.get("arguments")}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or "",
                    "name": function.get("name") or "",
                    "input": arguments if isinstance(arguments, dict) else {"value": arguments},
                }
            )
        finish = "refusal" if message.refusal and not message.content else choice.finish_reason
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": chat.model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": None,
        "usage": messages_usage(chat.usage),
    }


def chat_of_message(message: Mapping[str, Any]) -> ChatResponse:
    """A native ``Message`` read as a chat answer (what post-response hooks see);
    thinking blocks ride along with their signatures in ``thinking_blocks``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(dict(block))
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        reply["tool_calls"] = calls
    if thinking:
        reply["thinking_blocks"] = thinking
    finish = _FINISH.get(str(message.get("stop_reason")), "stop")
    return ChatResponse.model_validate(
        {
            "id": str(message.get("id") or "msg"),
            "model": str(message.get("model") or ""),
            "choices": [{"index": 0, "message": reply, "finish_reason": finish}],
            "usage": usage_of(message.get("usage")),
        }
    )
