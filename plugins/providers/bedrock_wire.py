"""Translation between OpenAI chat completions and Amazon Bedrock Converse.

Pure functions and one small stream state machine, no I/O; field names follow
the bedrock-runtime service model (botocore ``data/bedrock-runtime/2023-09-30``):

- request: ``messages`` (``user``/``assistant`` turns of content blocks:
  ``text``, ``image``, ``toolUse``, ``toolResult``), ``system``,
  ``inferenceConfig`` (``maxTokens``, ``temperature``, ``topP``,
  ``stopSequences``), ``toolConfig`` (``tools[].toolSpec``, ``toolChoice``);
- response: ``output.message``, ``stopReason``, ``usage``;
- stream events: ``messageStart``, ``contentBlockStart`` / ``Delta`` / ``Stop``,
  ``messageStop``, ``metadata``, and exceptions by name.

Usage follows OpenAI: ``prompt_tokens`` = ``inputTokens`` + cache reads + cache
writes (Bedrock counts them apart), with the reads in
``prompt_tokens_details.cached_tokens`` and the writes in
``prompt_tokens_details.cache_creation_tokens``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from turnout.plugins.providers import reasoning
from turnout.plugins.providers.anthropic_wire import DEFAULT_MAX_TOKENS, model_output_limit
from turnout.provider_api import (
    ChatChunk,
    ChatRequest,
    FailureClass,
    Message,
    TranslationError,
    append_turn,
    data_url,
    image_url,
)

__all__ = [
    "FINISH_REASONS",
    "ConverseStreamState",
    "TranslationError",
    "classify_exception",
    "finish_reason",
    "from_converse",
    "to_converse",
    "usage_from_converse",
]

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
"""Bedrock ``stopReason`` → OpenAI ``finish_reason``; anything else is ``stop``."""

_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}

_EXCEPTION_CLASS: dict[str, FailureClass] = {
    "throttlingexception": FailureClass.RATE_LIMITED,
    "servicequotaexceededexception": FailureClass.RATE_LIMITED,
    "serviceunavailableexception": FailureClass.OVERLOADED,
    "modelnotreadyexception": FailureClass.OVERLOADED,
    "internalserverexception": FailureClass.SERVER_ERROR,
    "modelerrorexception": FailureClass.SERVER_ERROR,
    "modelstreamerrorexception": FailureClass.SERVER_ERROR,
    "modeltimeoutexception": FailureClass.TIMEOUT,
    "accessdeniedexception": FailureClass.AUTH,
    "unrecognizedclientexception": FailureClass.AUTH,
    "invalidsignatureexception": FailureClass.AUTH,
    "incompletesignatureexception": FailureClass.AUTH,
    "missingauthenticationtokenexception": FailureClass.AUTH,
    "expiredtokenexception": FailureClass.AUTH,
    "validationexception": FailureClass.BAD_REQUEST,
    "resourcenotfoundexception": FailureClass.NOT_FOUND,  # no such model ID in this region
}
_TOO_LONG = re.compile(
    r"too long|context length|context window|too many (input )?tokens|max(imum)? input tokens",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------
# request
# --------------------------------------------------------------------------


def to_converse(
    request: ChatRequest, *, default_max_tokens: int | None = None, model: str = ""
) -> dict[str, Any]:
    """The Converse body (without ``modelId``, which goes in the path).

    System and developer messages, wherever they are, become ``system``;
    ``tool`` messages become ``toolResult`` blocks of a user turn; consecutive
    turns of one role are merged, as Converse requires alternation. For a
    Claude ``model``, ``reasoning_effort`` becomes Anthropic's ``thinking`` in
    ``additionalModelRequestFields`` (see ``_think``); other models ignore it.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    used_tools: dict[str, None] = {}
    for message in request.messages:
        role = message.role
        if role in ("system", "developer"):
            text = _text_of(message.content)
            if text:
                system.append({"text": text})
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message, used_tools)
            turn_role = "assistant"
        elif role in ("tool", "function"):
            blocks = [_tool_result(message)]
            turn_role = "user"
        else:
            blocks = _user_blocks(message.content)
            turn_role = "user"
        append_turn(turns, turn_role, blocks)
    for turn in turns:  # tool results first in a user turn, as Converse expects
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: 0 if "toolResult" in block else 1)

    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    inference = _inference_config(request, default_max_tokens)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(request, used_tools)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    _think(body, request, model)
    return body


def sent_max_tokens(
    request: ChatRequest, model: str, *, default_max_tokens: int | None = None
) -> int | None:
    """The largest ``maxTokens`` ``to_converse`` sends for ``request`` (what a
    budget must hold), or None when it sends none: raised where
    ``reasoning_effort`` gives a Claude ``model`` a thinking budget."""
    limit = request.output_limit or default_max_tokens
    name = reasoning.claude_in_bedrock_id(model)
    if name is None or not request.model_extra:
        return limit
    try:
        effort = reasoning.requested_effort(request.model_extra)
    except ValueError:  # the translation refuses the request
        return limit
    if effort is None:
        return limit
    base = limit or DEFAULT_MAX_TOKENS
    plan = reasoning.claude_thinking(
        effort, name, max_tokens=base, model_limit=model_output_limit(name)
    )
    return limit if plan is None else max(base, plan.max_tokens)


def _think(body: dict[str, Any], request: ChatRequest, model: str) -> None:
    """``reasoning_effort`` as Claude thinking, as the Anthropic provider does it.

    Left off where Claude would refuse it: a forced tool choice, or a turn that
    answers tool calls (Converse replies' reasoning blocks are not kept, so they
    cannot be sent back as Claude requires). With thinking on, ``temperature``
    and a ``topP`` below 0.95 are dropped.
    """
    try:
        effort = reasoning.requested_effort(request.model_extra)
    except ValueError as exc:
        raise TranslationError(f"bedrock: {exc}") from None
    name = reasoning.claude_in_bedrock_id(model)
    if effort is None or name is None:
        return
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    last = body["messages"][-1] if body["messages"] else {}
    answering = last.get("role") == "user" and any("toolResult" in b for b in last["content"])
    if "any" in choice or "tool" in choice or answering:
        return
    inference = body.get("inferenceConfig") or {}
    limit = inference.get("maxTokens") or DEFAULT_MAX_TOKENS
    plan = reasoning.claude_thinking(
        effort, name, max_tokens=limit, model_limit=model_output_limit(name)
    )
    if plan is None:
        return
    fields: dict[str, Any] = {"thinking": plan.thinking}
    if plan.effort is not None:
        fields["output_config"] = {"effort": plan.effort}
    else:  # a budget: maxTokens must exceed it
        inference["maxTokens"] = plan.max_tokens
    body["additionalModelRequestFields"] = fields
    inference.pop("temperature", None)
    if inference.get("topP", 1.0) < 0.95:
        del inference["topP"]
    if inference:
        body["inferenceConfig"] = inference
    else:
        body.pop("inferenceConfig", None)


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def _user_blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": str(part["text"])})
        elif kind == "image_url":
            blocks.append({"image": _image(image_url(part, "bedrock: image_url"))})
        else:
            raise TranslationError(f"bedrock: content part of type {kind!r} is not supported")
    return blocks


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url, "bedrock: image_url")
    if inline is not None:
        kind, _, subtype = inline.media_type.partition("/")
        fmt = _IMAGE_FORMATS.get(subtype) if kind == "image" else None
        if fmt is None:
            raise TranslationError(
                f"bedrock: image format {subtype or kind!r} is not one of png, jpeg, gif, webp"
            )
        data = inline.data
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise TranslationError("bedrock: the image data URL is not valid base64") from None
        return {"format": fmt, "source": {"bytes": data}}
    if url.startswith("s3://"):
        suffix = url.rsplit(".", 1)[-1].lower()
        return {"format": _IMAGE_FORMATS.get(suffix, "png"), "source": {"s3Location": {"uri": url}}}
    raise TranslationError(
        "bedrock takes images as base64 data: URLs or s3:// URIs, not http(s) URLs"
    )


def _assistant_blocks(message: Message, used_tools: dict[str, None]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text_of(message.content)
    if text:
        blocks.append({"text": text})
    for call in message.tool_calls or ():
        function = call.get("function") or {}
        name = str(function.get("name", ""))
        used_tools[name] = None
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": str(call.get("id", "")),
                    "name": name,
                    "input": _arguments(function.get("arguments")),
                }
            }
        )
    return blocks


def _arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise TranslationError("bedrock: tool call arguments are not valid JSON") from None
    return value if isinstance(value, dict) else {"value": value}


def _tool_result(message: Message) -> dict[str, Any]:
    content = message.content
    blocks: list[dict[str, Any]] = []
    if isinstance(content, list):
        for part in content:
            if part.get("type") == "text" and part.get("text"):
                blocks.append({"text": str(part["text"])})
            elif part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                blocks.append({"image": _image(str(url or ""))})
    elif content:
        blocks.append({"text": content})
    if not blocks:
        blocks.append({"text": "(empty)"})
    return {"toolResult": {"toolUseId": str(message.tool_call_id or ""), "content": blocks}}


def _inference_config(request: ChatRequest, default_max_tokens: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = request.output_limit or default_max_tokens
    if limit is not None:
        config["maxTokens"] = limit
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    stop = request.stop
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _tool_config(request: ChatRequest, used_tools: Mapping[str, None]) -> dict[str, Any] | None:
    tools = [_tool_spec(tool) for tool in request.tools or ()]
    choice = request.tool_choice
    if not tools and not used_tools:
        return None
    if choice == "none" and not used_tools:
        return None
    if not tools:
        # Converse needs toolConfig whenever the history holds tool blocks.
        tools = [
            {"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}}
            for name in used_tools
        ]
    config: dict[str, Any] = {"tools": tools}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            config["toolChoice"] = {"tool": {"name": str(name)}}
    return config


def _tool_spec(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise TranslationError(f"bedrock: tool of type {tool.get('type')!r} is not supported")
    spec: dict[str, Any] = {"name": str(function.get("name", ""))}
    if function.get("description"):
        spec["description"] = str(function["description"])
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    spec["inputSchema"] = {"json": parameters}
    return {"toolSpec": spec}


# --------------------------------------------------------------------------
# response
# --------------------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str | None:
    """The OpenAI ``finish_reason`` of a Bedrock ``stopReason``."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def usage_from_converse(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI usage from Bedrock ``TokenUsage`` (cache tokens counted once, in the prompt)."""
    if not usage:
        return None
    fresh = int(usage.get("inputTokens") or 0)
    read = int(usage.get("cacheReadInputTokens") or 0)
    write = int(usage.get("cacheWriteInputTokens") or 0)
    output = int(usage.get("outputTokens") or 0)
    prompt = fresh + read + write
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
    }
    if read or write:
        result["prompt_tokens_details"] = {"cached_tokens": read, "cache_creation_tokens": write}
    return result


def from_converse(
    body: Mapping[str, Any], *, response_id: str, model: str, created: int
) -> dict[str, Any]:
    """A ``chat.completion`` dict from a Converse response body."""
    output = body.get("output") or {}
    message = output.get("message") or {}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if "text" in block:
            texts.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                {
                    "id": use.get("toolUseId", ""),
                    "type": "function",
                    "function": {
                        "name": use.get("name", ""),
                        "arguments": json.dumps(use.get("input") or {}, separators=(",", ":")),
                    },
                }
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    result: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": reply, "finish_reason": finish_reason(body.get("stopReason"))}
        ],
    }
    usage = usage_from_converse(body.get("usage"))
    if usage is not None:
        result["usage"] = usage
    return result


def classify_exception(name: str | None, status: int | None, message: str) -> FailureClass:
    """The failure class of a Bedrock exception (``ThrottlingException``, ...).

    ``name`` may carry the ``x-amzn-ErrorType`` suffix (``Name:http://...``)
    or a stream event's lower-camel spelling (``throttlingException``).
    """
    key = (name or "").split(":", 1)[0].split("#")[-1].strip().lower()
    failure = _EXCEPTION_CLASS.get(key)
    if failure is None:
        failure = FailureClass.from_status(status) if status else FailureClass.SERVER_ERROR
    if failure is FailureClass.BAD_REQUEST and _TOO_LONG.search(message):
        return FailureClass.CONTEXT_LENGTH
    return failure


# --------------------------------------------------------------------------
# stream
# --------------------------------------------------------------------------


class ConverseStreamState:
    """Turns ConverseStream events into chunks: a ``StreamTranslator`` (``dicts``
    gives them as plain dicts); ``finished`` is True once ``messageStop`` arrived."""

    def __init__(self, *, response_id: str, model: str, created: int) -> None:
        self._base = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._tool_index: dict[int, int] = {}
        self._started = False
        self.finished = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        return {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def feed(self, event: str, payload: Mapping[str, Any]) -> list[ChatChunk]:
        """Chunks for one event; unknown events (and reasoning deltas) give none."""
        return [ChatChunk.model_validate(chunk) for chunk in self.dicts(event, payload)]

    def finish(self) -> list[ChatChunk]:
        return []  # usage came with the ``metadata`` event

    def dicts(self, event: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        if event == "messageStart":
            return [self._chunk({"content": ""})]
        if event == "contentBlockStart":
            use = (payload.get("start") or {}).get("toolUse")
            if use is None:
                return []
            index = len(self._tool_index)
            self._tool_index[int(payload.get("contentBlockIndex", 0))] = index
            call = {
                "index": index,
                "id": use.get("toolUseId", ""),
                "type": "function",
                "function": {"name": use.get("name", ""), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if event == "contentBlockDelta":
            delta = payload.get("delta") or {}
            if "text" in delta:
                return [self._chunk({"content": str(delta["text"])})]
            use = delta.get("toolUse")
            if use is not None:
                block = int(payload.get("contentBlockIndex", 0))
                if block not in self._tool_index:  # a delta without its start
                    self._tool_index[block] = len(self._tool_index)
                tool = self._tool_index[block]
                arguments = {"arguments": str(use.get("input", ""))}
                return [self._chunk({"tool_calls": [{"index": tool, "function": arguments}]})]
            return []
        if event == "messageStop":
            self.finished = True
            return [self._chunk({}, finish_reason(payload.get("stopReason")) or "stop")]
        if event == "metadata":
            usage = usage_from_converse(payload.get("usage"))
            if usage is None:
                return []
            return [{**self._base, "choices": [], "usage": usage}]
        return []
