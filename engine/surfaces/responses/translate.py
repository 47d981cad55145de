"""Pure translations between the Responses API and chat completions.

Request side: ``instructions`` becomes a system message; ``input`` items
(messages with ``input_text`` / ``input_image`` / ``input_file`` /
``output_text`` parts, ``function_call`` and ``function_call_output``) become
chat messages; function tools, ``tool_choice``, ``text.format``,
``reasoning.effort``, ``max_output_tokens`` and ``metadata`` become their chat
fields. Built-in tools (``web_search``, ``file_search``, …) cannot run on a
chat-completions target: they are a 400 naming the field.

Response side: a chat answer's reasoning, text, refusal and tool calls become
``reasoning``, ``message`` and ``function_call`` output items, in that order;
``usage`` gets OpenAI's ``input_tokens`` / ``output_tokens`` names and details.
Output items are valid input items, so a stored conversation is kept as the
chat messages ``items_to_messages`` makes of its input and output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from turnout.errors import TurnoutError
from turnout.surfaces.responses.wire import ResponsesRequest, new_id
from turnout.wire.chat import ChatRequest, ChatResponse, Usage

__all__ = [
    "build_response",
    "finish_status",
    "input_item_list",
    "items_to_messages",
    "output_items",
    "to_chat_request",
    "usage_of",
]

_ROLES = ("user", "assistant", "system", "developer")
_FORMATS = ("text", "json_object", "json_schema")


def _bad(message: str, param: str) -> TurnoutError:
    return TurnoutError(message, code="invalid_request", param=param)


def _part(part: Any, where: str) -> dict[str, Any]:
    """One input content part as a chat content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not url:
            raise _bad(
                "an input_image needs image_url (file_id images need the OpenAI Files API, "
                "which a chat-completions target does not have)",
                f"{where}.image_url",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
        return {"type": "file", "file": file}
    raise _bad(
        f"unsupported content part type {kind!r}; use input_text, input_image or input_file",
        f"{where}.type",
    )


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("content must be a string or a list of content parts", where)
    parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str | list[dict[str, Any]]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _content(output, "output")
    return json.dumps(output)


def items_to_messages(
    items: str | Sequence[dict[str, Any]], where: str = "input"
) -> list[dict[str, Any]]:
    """Input (or output) items as chat messages; consecutive function calls join
    the assistant message before them, as chat completions carries them."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise _bad(f"message role {role!r} is not one of {', '.join(_ROLES)}", f"{at}.role")
            messages.append(
                {"role": role, "content": _content(item.get("content"), f"{at}.content")}
            )
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or new_id("call"),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not item.get("call_id"):
                raise _bad("a function_call_output needs the call_id it answers", f"{at}.call_id")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _output_text(item.get("output")),
                }
            )
        elif kind == "reasoning":
            continue  # a chat-completions target takes no reasoning items back
        else:
            raise _bad(
                f"input item type {kind!r} cannot be sent to a chat-completions target; "
                "use message, function_call or function_call_output items",
                f"{at}.type",
            )
    return messages


def input_item_list(items: str | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input as items with ids, as ``GET /v1/responses/{id}/input_items`` lists them."""
    if isinstance(items, str):
        items = [{"role": "user", "content": [{"type": "input_text", "text": items}]}]
    out = []
    for item in items:
        entry = {"type": "message", **item} if "type" not in item else dict(item)
        if entry["type"] == "message" and isinstance(entry.get("content"), str):
            kind = "output_text" if entry.get("role") == "assistant" else "input_text"
            entry["content"] = [{"type": kind, "text": entry["content"]}]
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
        entry.setdefault("id", new_id(prefix.get(entry["type"], "item")))
        entry.setdefault("status", "completed")
        out.append(entry)
    return out


def _tool(tool: dict[str, Any], at: str) -> dict[str, Any]:
    kind = tool.get("type")
    if kind == "function" and not isinstance(tool.get("name"), str):
        raise _bad("a function tool needs a name", f"{at}.name")
    if kind == "function":
        spec = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        if not spec.get("name"):
            raise _bad("a function tool needs a name", f"{at}.name")
        return {"type": "function", "function": spec}
    if kind == "custom":
        custom = {k: tool[k] for k in ("name", "description", "format") if k in tool}
        return {"type": "custom", "custom": custom}
    raise _bad(
        f"built-in tool {kind!r} cannot run on a chat-completions target; "
        "declare your own function tools instead",
        f"{at}.type",
    )


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind == "custom":
        return {"type": "custom", "custom": {"name": choice.get("name")}}
    if kind == "allowed_tools":
        listed = choice.get("tools")
        tools = [_tool_choice(t) for t in listed] if isinstance(listed, list) else []
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools},
        }
    raise _bad(
        f"tool_choice type {kind!r} names a built-in tool a chat-completions target cannot run",
        "tool_choice.type",
    )


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    spec = text.get("format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in _FORMATS:
        raise _bad(f"text.format.type must be one of {', '.join(_FORMATS)}", "text.format.type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    schema = {k: spec[k] for k in ("name", "description", "schema", "strict") if k in spec}
    if "schema" not in schema:
        raise _bad("text.format json_schema needs a schema", "text.format.schema")
    schema.setdefault("name", "response")
    return {"type": "json_schema", "json_schema": schema}


def to_chat_request(
    request: ResponsesRequest, history: Sequence[dict[str, Any]] = ()
) -> ChatRequest:
    """The chat request for ``request``, after a stored conversation's ``history``."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    messages += history
    if request.input is not None:
        messages += items_to_messages(request.input)
    if not any(m["role"] != "system" for m in messages):
        raise TurnoutError(
            "the request has no input: send input (a string or a list of items)",
            code="invalid_request",
            param="input",
        )
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(request.tools)]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None and request.tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text:
        fmt = _response_format(request.text)
        if fmt is not None:
            body["response_format"] = fmt
        if request.text.get("verbosity"):
            body["verbosity"] = request.text["verbosity"]
    effort = (request.reasoning or {}).get("effort")
    if effort:
        body["reasoning_effort"] = effort
    for ours, theirs in (
        ("max_output_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("metadata", "metadata"),
        ("user", "user"),
        ("fallbacks", "fallbacks"),
    ):
        value = getattr(request, ours)
        if value is not None:
            body[theirs] = value
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TurnoutError(
            f"the request does not translate to a valid chat request: {where}: {first['msg']}",
            status_code=422,
            code="invalid_request",
        ) from None


def output_items(chat: ChatResponse) -> list[dict[str, Any]]:
    """The first choice of ``chat`` as output items: reasoning, message, calls."""
    if not chat.choices:
        return []
    message = chat.choices[0].message
    items: list[dict[str, Any]] = []
    reasoning = (message.model_extra or {}).get("reasoning_content")
    if reasoning:
        items.append(
            {
                "type": "reasoning",
                "id": new_id("rs"),
                "summary": [{"type": "summary_text", "text": str(reasoning)}],
            }
        )
    content: list[dict[str, Any]] = []
    if message.content:
        content.append(
            {"type": "output_text", "text": message.content, "annotations": [], "logprobs": []}
        )
    if message.refusal:
        content.append({"type": "refusal", "refusal": message.refusal})
    if content:
        items.append(
            {
                "type": "message",
                "id": new_id("msg"),
                "status": "completed",
                "role": "assistant",
                "content": content,
            }
        )
    for call in message.tool_calls or []:
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name", ""),
                "arguments": function.get("arguments") or "",
                "status": "completed",
            }
        )
    return items


def usage_of(usage: Usage | None) -> dict[str, Any] | None:
    """Chat usage in the Responses API's names, with both details objects."""
    if usage is None:
        return None
    extra = usage.model_extra or {}
    cached = (extra.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (extra.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def finish_status(finish_reason: str | None) -> tuple[str, dict[str, Any] | None]:
    """``status`` and ``incomplete_details`` for a chat finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def build_response(
    request: ResponsesRequest,
    *,
    id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    model: str | None = None,
    usage: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object, echoing the request's settings as OpenAI does."""
    text = request.text or {"format": {"type": "text"}}
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model or request.model,
        "output": output,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None, **(request.reasoning or {})},
        "store": request.stored,
        "temperature": request.temperature,
        "text": text,
        "tool_choice": request.tool_choice or "auto",
        "tools": request.tools or [],
        "top_p": request.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user,
        "metadata": request.metadata or {},
    }
