"""OpenAI chat completions ⇄ Anthropic Messages API, as pure functions.

No I/O here: ``anthropic.py`` sends what ``messages_body`` builds and feeds
what comes back to ``chat_response`` or a ``StreamTranslator``. Field names and
event shapes follow Anthropic's API reference and its official Python SDK types
(``anthropic.types``: ``MessageCreateParams``, ``Message``, ``RawMessageStreamEvent``,
``ErrorResponse``).

Translation decisions (also in the provider's docs):

- ``system`` / ``developer`` messages are hoisted, in order, into the top-level
  ``system`` (a list of text blocks, so ``cache_control`` on a part survives).
- Consecutive messages of the same role are merged into one turn; ``tool``
  messages become ``tool_result`` blocks of a user turn, ahead of its other
  content (the API wants tool results first).
- ``max_tokens`` is required by Anthropic: the request's ``max_completion_tokens``
  or ``max_tokens``, else a default (see ``default_max_tokens``).
- ``temperature`` is clamped to Anthropic's range, 0 to 1; ``stop`` becomes
  ``stop_sequences``; ``user`` becomes ``metadata.user_id``; a ``json_schema``
  ``response_format`` becomes ``output_config.format``. Sampling fields Anthropic
  has no equivalent for (``seed``, penalties, ``logit_bias``, ``logprobs``) are
  dropped; ``n > 1`` is refused.
- ``reasoning_effort`` becomes ``thinking`` (see ``reasoning``): a budget,
  with ``max_tokens`` raised when it leaves no room, or adaptive thinking with
  ``output_config.effort`` on Claude 4.6 and later. A ``thinking`` the caller
  sent wins. It is left off where Anthropic would refuse it (a forced
  ``tool_choice``; answering tool calls whose thinking blocks were not sent
  back). With thinking on, ``temperature`` and ``top_k`` are dropped, and
  ``top_p`` below 0.95 (Anthropic rejects them).
- Replies: text blocks join into ``content``; ``thinking`` blocks into
  ``reasoning_content``, and every thinking / redacted_thinking block, with its
  signature, into ``thinking_blocks`` (send them back on the assistant message
  to continue a tool-use turn with extended thinking); ``tool_use`` blocks
  into ``tool_calls``.
- Usage: ``prompt_tokens`` = input + cache read + cache creation tokens (OpenAI's
  prompt_tokens includes cached tokens); ``prompt_tokens_details.cached_tokens``
  = cache reads, ``prompt_tokens_details.cache_creation_tokens`` = cache writes.

Replies, stream events, usage and errors are translated in ``anthropic_reply``;
they are re-exported here so this module is the one surface of both halves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from turnout.plugins.providers import reasoning
from turnout.plugins.providers.anthropic_reply import (
    FINISH_REASONS,
    StreamTranslator,
    chat_response,
    classify_error,
    finish_reason,
    usage,
)
from turnout.provider_api import (
    ChatRequest,
    FailureClass,
    Message,
    ProviderError,
    append_turn,
    data_url,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_MAX_TOKENS",
    "FINISH_REASONS",
    "StreamTranslator",
    "chat_response",
    "classify_error",
    "default_max_tokens",
    "finish_reason",
    "messages_body",
    "model_output_limit",
    "usage",
]

API_VERSION = "2023-06-01"

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` for a model this module does not know, when the request sets none."""

NON_STREAMING_MAX_TOKENS = 21_333
"""The largest default sent without streaming: the official SDKs refuse a
non-streaming request whose ``max_tokens`` implies more than ten minutes of
generation (3600 s * max_tokens / 128,000 > 600 s), as Anthropic advises
streaming for long outputs."""

# Largest output of each model family (Anthropic's models overview), longest
# prefix first. ``max_tokens`` is a ceiling, not a reservation, so a request
# that sets none gets the model's own limit, as an OpenAI caller expects.
_MAX_OUTPUT: tuple[tuple[str, int], ...] = (
    ("claude-3-haiku", 4096),
    ("claude-3-opus", 4096),
    ("claude-3-sonnet", 4096),
    ("claude-3-5-", 8192),
    ("claude-3-7-", 64_000),
    ("claude-opus-4-0", 32_000),
    ("claude-opus-4-1", 32_000),
    ("claude-opus-4-2025", 32_000),
    ("claude-opus-4-5", 64_000),
    ("claude-sonnet-4-0", 64_000),
    ("claude-sonnet-4-2025", 64_000),
    ("claude-sonnet-4-5", 64_000),
    ("claude-haiku-4-5", 64_000),
    ("claude-opus-4-6", 128_000),
    ("claude-sonnet-4-6", 128_000),
    ("claude-opus-4-7", 128_000),
    ("claude-opus-4-8", 128_000),
    ("claude-sonnet-5", 128_000),
    ("claude-opus-5", 128_000),
    ("claude-haiku-5", 128_000),
    ("claude-fable-5", 128_000),
)
_EXACT_MAX_OUTPUT = {"claude-opus-4": 32_000, "claude-sonnet-4": 64_000}

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DROPPED_SAMPLING = ("seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs")


def _bad(message: str) -> ProviderError:
    return ProviderError(FailureClass.BAD_REQUEST, message)


# --------------------------------------------------------------------------
# request: OpenAI → Anthropic
# --------------------------------------------------------------------------


def default_max_tokens(model: str, *, stream: bool, configured: int | None = None) -> int:
    """``max_tokens`` for a request that sets none.

    :param model: the upstream model name.
    :param stream: whether the request streams (non-streaming defaults are
        capped at ``NON_STREAMING_MAX_TOKENS``).
    :param configured: the provider's ``options.max_tokens``; wins when set.
    """
    if configured is not None:
        return configured
    limit = model_output_limit(model)
    if limit is None:
        return DEFAULT_MAX_TOKENS
    return limit if stream else min(limit, NON_STREAMING_MAX_TOKENS)


def sent_max_tokens(request: ChatRequest, model: str, *, max_tokens: int) -> int:
    """The largest ``max_tokens`` ``messages_body`` sends for ``request`` (what a
    budget must hold): the caller's limit or ``max_tokens``, raised where
    ``reasoning_effort`` needs room for a thinking budget."""
    limit = request.output_limit or max_tokens
    extra = request.model_extra or {}
    if not extra or extra.get("thinking") is not None:
        return limit
    try:
        effort = reasoning.requested_effort(dict(extra))
    except ValueError:  # the translation refuses the request
        return limit
    if effort is None:
        return limit
    plan = reasoning.claude_thinking(
        effort, model, max_tokens=limit, model_limit=model_output_limit(model)
    )
    return limit if plan is None else max(limit, plan.max_tokens)


def model_output_limit(model: str) -> int | None:
    """The largest output of a Claude model family, or None for one not known here."""
    limit = _EXACT_MAX_OUTPUT.get(model)
    if limit is None:
        limit = next((n for prefix, n in _MAX_OUTPUT if model.startswith(prefix)), None)
    return limit


def messages_body(
    request: ChatRequest, model: str, *, max_tokens: int, stream: bool = False
) -> dict[str, Any]:
    """The ``POST /v1/messages`` body for an OpenAI-format request.

    :param request: the caller's request.
    :param model: the upstream model name.
    :param max_tokens: used when the request sets neither ``max_completion_tokens``
        nor ``max_tokens``.
    :param stream: ask for Server-Sent Events.
    :raises ProviderError: BAD_REQUEST for what Anthropic cannot express
        (``n > 1``, audio input, malformed tool-call arguments, ...).
    """
    if request.n is not None and request.n > 1:
        raise _bad("n > 1 is not supported by the Anthropic Messages API")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for position, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            system.extend(_text_blocks(message.content, f"messages[{position}]"))
            continue
        role, blocks = _turn(message, position)
        append_turn(turns, role, blocks)
    if not turns:
        raise _bad("the Anthropic Messages API needs at least one user or assistant message")
    for turn in turns:
        _finish_turn(turn)
    last = turns[-1]
    if last["role"] == "assistant":  # a prefill: the API rejects trailing whitespace there
        content = last["content"]
        if isinstance(content, str):
            last["content"] = content.rstrip()
        elif content and content[-1].get("type") == "text":
            content[-1] = {**content[-1], "text": content[-1]["text"].rstrip()}

    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.output_limit or max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        if stops:
            body["stop_sequences"] = stops
    if request.user:
        body["metadata"] = {"user_id": request.user}
    extra = request.model_extra or {}
    for name in ("top_k", "thinking", "service_tier"):
        if extra.get(name) is not None:
            body[name] = extra[name]
    tools = [_tool(tool, i) for i, tool in enumerate(request.tools or ())]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    output_format = _output_format(request.response_format)
    if output_format is not None:
        body["output_config"] = {"format": output_format}
    _think(body, extra, model)
    if stream:
        body["stream"] = True
    return body


def _think(body: dict[str, Any], extra: Mapping[str, Any], model: str) -> None:
    """``reasoning_effort`` as thinking, unless the caller sent ``thinking`` itself;
    then the sampling fields thinking rejects are dropped."""
    try:
        effort = reasoning.requested_effort(dict(extra))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if effort is not None and "thinking" not in body and not _thinking_refused(body):
        plan = reasoning.claude_thinking(
            effort, model, max_tokens=body["max_tokens"], model_limit=model_output_limit(model)
        )
        if plan is not None:
            body["thinking"] = plan.thinking
            body["max_tokens"] = plan.max_tokens
            if plan.effort is not None:
                body.setdefault("output_config", {})["effort"] = plan.effort
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        body.pop("temperature", None)
        body.pop("top_k", None)
        if body.get("top_p", 1.0) < 0.95:
            del body["top_p"]


def _thinking_refused(body: Mapping[str, Any]) -> bool:
    """Whether Anthropic would refuse thinking here: a forced tool choice, or a
    tool-use turn being answered whose assistant message has no thinking block
    (an OpenAI client does not send ``thinking_blocks`` back)."""
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return True
    turns = body["messages"]
    last = turns[-1]["content"]
    if len(turns) < 2 or isinstance(last, str):
        return False
    if not any(block.get("type") == "tool_result" for block in last):
        return False
    answered = turns[-2]["content"]
    first = answered[0] if isinstance(answered, list) and answered else {}
    return first.get("type") not in ("thinking", "redacted_thinking")


def _turn(message: Message, position: int) -> tuple[str, list[dict[str, Any]]]:
    where = f"messages[{position}]"
    if message.role == "user":
        return "user", _user_blocks(message.content, where)
    if message.role == "tool":
        if not message.tool_call_id:
            raise _bad(f"{where}: a tool message needs tool_call_id")
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        content = message.content
        if isinstance(content, str):
            result["content"] = content
        elif content:
            result["content"] = _user_blocks(content, where)
        return "user", [result]
    if message.role == "assistant":
        return "assistant", _assistant_blocks(message, where)
    raise _bad(f"{where}: role {message.role!r} is not supported; use tools and tool messages")


def _finish_turn(turn: dict[str, Any]) -> None:
    """Put tool results first; collapse a lone text block to a string."""
    blocks: list[dict[str, Any]] = turn["content"]
    if turn["role"] == "user" and any(b.get("type") == "tool_result" for b in blocks):
        blocks.sort(key=lambda b: b.get("type") != "tool_result")
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"} and blocks[0]["type"] == "text":
        turn["content"] = blocks[0]["text"]


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise _bad(f"{where}.content[{i}]: only text parts are allowed here, not {kind!r}")
        text = part.get(kind)
        if not isinstance(text, str):
            raise _bad(f"{where}.content[{i}]: {kind} part without {kind!r}")
        if text:
            blocks.append(_with_cache_control({"type": "text", "text": text}, part))
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, where)
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.extend(_text_blocks([part], where))
        elif kind == "image_url":
            blocks.append(_with_cache_control(_image(part, f"{where}.content[{i}]"), part))
        elif kind == "file":
            blocks.append(_with_cache_control(_document(part, f"{where}.content[{i}]"), part))
        else:
            raise _bad(f"{where}.content[{i}]: Anthropic does not accept {kind!r} parts")
    return blocks


def _image(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}: image_url part without a url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    inline = data_url(url, where)
    if inline is None:
        raise _bad(f"{where}: image url must be http(s) or a base64 data: URL")
    media_type = inline.media_type
    if media_type not in _IMAGE_TYPES:
        raise _bad(f"{where}: Anthropic accepts jpeg, png, gif and webp images, not {media_type}")
    source = {"type": "base64", "media_type": media_type, "data": inline.data}
    return {"type": "image", "source": source}


def _document(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, Mapping) else None
    inline = data_url(data, where) if isinstance(data, str) else None
    if inline is None or inline.media_type != "application/pdf":
        raise _bad(f"{where}: only PDF files given inline as file_data (a data: URL) are supported")
    source = {"type": "base64", "media_type": "application/pdf", "data": inline.data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(file, Mapping) and isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _with_cache_control(block: dict[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: Message, where: str) -> list[dict[str, Any]]:
    extra = message.model_extra or {}
    blocks: list[dict[str, Any]] = []
    for block in extra.get("thinking_blocks") or ():
        if isinstance(block, Mapping) and block.get("type") in ("thinking", "redacted_thinking"):
            blocks.append(dict(block))
    blocks.extend(_text_blocks(message.content, where))
    for i, call in enumerate(message.tool_calls or ()):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{i}]"))
    return blocks


def _tool_use(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    function = call.get("function")
    if call.get("type", "function") != "function" or not isinstance(function, Mapping):
        raise _bad(f"{where}: only function tool calls are supported")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        raise _bad(f"{where}: function.arguments is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _bad(f"{where}: function.arguments must be a JSON object")
    if not call.get("id") or not function.get("name"):
        raise _bad(f"{where}: a tool call needs an id and function.name")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def _tool(tool: Mapping[str, Any], index: int) -> dict[str, Any]:
    function = tool.get("function")
    if tool.get("type", "function") != "function" or not isinstance(function, Mapping):
        raise _bad(f"tools[{index}]: only function tools are supported")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"tools[{index}]: function.name is required")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    out: dict[str, Any] = {"name": name, "input_schema": schema}
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("strict") is not None:
        out["strict"] = function["strict"]
    if tool.get("cache_control") is not None:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None:
        out: dict[str, Any] | None = None if parallel is not False else {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}  # takes no disable_parallel_tool_use
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice.function.name is required")
        out = {"type": "tool", "name": name}
    else:
        raise _bad(f"tool_choice {choice!r} is not supported")
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _output_format(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not response_format or response_format.get("type") != "json_schema":
        return None  # "text" is the default; "json_object" has no Anthropic equivalent
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise _bad("response_format.json_schema.schema is required")
    return {"type": "json_schema", "schema": dict(schema)}
