"""Translation between OpenAI chat completions and Gemini's generateContent.

Pure functions, no I/O, so they can be property-tested on their own. Field
names follow the Gemini API reference (REST, lowerCamelCase) and the types of
the official SDK, googleapis/python-genai (``types.py``).

Choices made where the two formats differ:

- system and developer messages become ``systemInstruction`` (in order,
  wherever they appear); consecutive turns of the same role are merged,
  tool results included, so N parallel calls are answered in one turn of N
  ``functionResponse`` parts, as Gemini requires.
- Gemini has no tool-call ids: ids are made from the response id, the
  candidate and the call's position, so they are stable for one response and
  distinct across responses. A tool message's function name is looked up
  from the earlier assistant tool call with its ``tool_call_id``.
- Thought signatures (Gemini 3 rejects function calls replayed without one)
  travel in ``tool_calls[].extra_content.google.thought_signature``, the shape
  Google's own OpenAI-compatible endpoint uses. A model turn replayed without
  any signature (a client that dropped it, or history from another vendor)
  gets Google's documented ``skip_thought_signature_validator`` sentinel.
- Tool parameters and ``json_schema`` response formats are sent as
  ``parametersJsonSchema`` / ``responseJsonSchema`` (full JSON Schema), not the
  OpenAPI-subset ``parameters`` / ``responseSchema`` that reject
  ``additionalProperties`` and ``$ref``, which OpenAI-style schemas use.
- ``reasoning_effort`` becomes ``thinkingConfig``: a ``thinkingBudget`` on
  Gemini 2.5, a ``thinkingLevel`` on Gemini 3 and later, with thought
  summaries asked for (they come back as ``reasoning_content``); see
  ``reasoning.gemini_thinking_config``.
- ``usage.prompt_tokens`` includes cached tokens (as Gemini's
  ``promptTokenCount`` and OpenAI's ``prompt_tokens`` both do), reported again
  only in ``prompt_tokens_details.cached_tokens``; thinking tokens count as
  completion tokens and are reported in ``completion_tokens_details``.
"""

from __future__ import annotations

import json
import mimetypes
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from turnout.plugins.providers import reasoning
from turnout.plugins.providers.gemini_reply import (
    GeminiStream,
    block_reason,
    failure_class,
    finish_reason,
    response_from_gemini,
    retry_delay,
    usage_from_gemini,
)
from turnout.provider_api import (
    ChatRequest,
    Message,
    TranslationError,
    append_turn,
    arguments,
    data_url,
    function_tool,
    image_url,
)

__all__ = [
    "SKIP_SIGNATURE",
    "GeminiStream",
    "TranslationError",
    "block_reason",
    "failure_class",
    "finish_reason",
    "request_body",
    "response_from_gemini",
    "retry_delay",
    "usage_from_gemini",
]

SKIP_SIGNATURE = "skip_thought_signature_validator"

_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "aac": "audio/aac"}


# --------------------------------------------------------------------------
# request: OpenAI -> Gemini
# --------------------------------------------------------------------------


def request_body(request: ChatRequest, model: str = "") -> dict[str, Any]:
    """The ``generateContent`` body for ``request``.

    :param model: the upstream model (it goes in the URL); it decides how
        ``reasoning_effort`` is expressed (see ``reasoning.gemini_thinking_config``).
    """
    system, contents = contents_from_messages(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = _function_declarations(request.tools)
        mode, allowed = _calling_mode(request.tool_choice, declarations)
        if allowed is not None and mode == "AUTO":
            declarations = [d for d in declarations if d["name"] in allowed]
            allowed = None
        body["tools"] = [{"functionDeclarations": declarations}]
        if mode is not None:
            config: dict[str, Any] = {"mode": mode}
            if allowed is not None:
                config["allowedFunctionNames"] = allowed
            body["toolConfig"] = {"functionCallingConfig": config}
    config = generation_config(request, model)
    if config:
        body["generationConfig"] = config
    return body


def generation_config(request: ChatRequest, model: str = "") -> dict[str, Any]:
    """``generationConfig`` from the request's sampling, format and reasoning fields."""
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    extra = request.model_extra or {}
    if isinstance(extra.get("top_k"), int):
        config["topK"] = extra["top_k"]
    if request.output_limit is not None:
        config["maxOutputTokens"] = request.output_limit
    if request.stop:
        config["stopSequences"] = [request.stop] if isinstance(request.stop, str) else request.stop
    if request.n is not None:
        config["candidateCount"] = request.n
    if request.presence_penalty is not None:
        config["presencePenalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        config["frequencyPenalty"] = request.frequency_penalty
    if request.seed is not None:
        config["seed"] = request.seed
    fmt = request.response_format or {}
    kind = fmt.get("type")
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        config["responseMimeType"] = "application/json"
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    elif kind not in (None, "text"):
        raise TranslationError(f"response_format type {kind!r} is not supported by Gemini")
    try:
        effort = reasoning.requested_effort(extra)
    except ValueError as exc:
        raise TranslationError(str(exc)) from None
    thinking = reasoning.gemini_thinking_config(effort, model) if effort else None
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def contents_from_messages(
    messages: Sequence[Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(systemInstruction parts, contents)`` for OpenAI messages."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.role
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.content, where) if text)
            continue
        if role == "user":
            parts = _user_parts(message.content, where)
            gemini_role = "user"
        elif role == "assistant":
            parts = _assistant_parts(message, where, call_names)
            gemini_role = "model"
        else:  # tool, or the legacy function role
            parts = [_function_response(message, where, call_names)]
            gemini_role = "user"
        if not parts:
            if role == "user":
                raise TranslationError(f"{where}: a user message needs some content")
            continue
        append_turn(contents, gemini_role, parts, key="parts")
    if not contents:
        raise TranslationError("messages: Gemini needs at least one user or assistant message")
    return system, contents


def _texts(content: Any, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            texts.append(str(part.get(kind) or ""))
        else:
            raise TranslationError(f"{where}.content[{number}]: only text is allowed here")
    return texts


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for number, part in enumerate(content):
        at = f"{where}.content[{number}]"
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": str(part["text"])})
        elif kind == "image_url":
            parts.append(_media(image_url(part, at), at))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = str(audio.get("format", "")).lower()
            data = audio.get("data")
            if not isinstance(data, str) or fmt not in _AUDIO_MIME:
                raise TranslationError(
                    f"{at}: input_audio needs base64 data and a format (wav, mp3)"
                )
            parts.append({"inlineData": {"mimeType": _AUDIO_MIME[fmt], "data": data}})
        elif kind == "file":
            file = part.get("file") or {}
            data = file.get("file_data")
            if not isinstance(data, str):
                raise TranslationError(f"{at}: only files sent inline (file_data) are supported")
            parts.append(_media(data, at))
        else:
            raise TranslationError(f"{at}: content part type {kind!r} is not supported by Gemini")
    return parts


def _media(url: str, where: str) -> dict[str, Any]:
    """``inlineData`` for a base64 data: URL, ``fileData`` for any other URL."""
    inline = data_url(url, where)
    if inline is not None:
        return {"inlineData": {"mimeType": inline.media_type, "data": inline.data}}
    path = urllib.parse.urlsplit(url).path
    mime, _ = mimetypes.guess_type(path, strict=False)
    if mime is None:
        raise TranslationError(
            f"{where}: cannot tell the media type of {url[:100]!r}; "
            "send it as a data: URL, or use a URL whose path ends in .png, .jpg, .webp, .pdf, ..."
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _assistant_parts(
    message: Message, where: str, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"text": text} for text in _texts(message.content, where) if text
    ]
    calls: list[dict[str, Any]] = []
    for number, call in enumerate(message.tool_calls or []):
        at = f"{where}.tool_calls[{number}]"
        function = call.get("function")
        if call.get("type", "function") != "function" or not isinstance(function, dict):
            raise TranslationError(f"{at}: only function tool calls are supported by Gemini")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError(f"{at}: the function needs a name")
        part: dict[str, Any] = {
            "functionCall": {"name": name, "args": arguments(function.get("arguments"), at)}
        }
        signature = _signature(call)
        if signature:
            part["thoughtSignature"] = signature
        calls.append(part)
        if isinstance(call.get("id"), str):
            call_names[call["id"]] = name
    if calls and not any("thoughtSignature" in part for part in calls):
        calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return parts + calls


def _signature(call: Mapping[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _function_response(
    message: Message, where: str, call_names: Mapping[str, str]
) -> dict[str, Any]:
    name = call_names.get(message.tool_call_id or "") or message.name
    if not name:
        if message.tool_call_id:
            raise TranslationError(
                f"{where}: tool_call_id {message.tool_call_id!r} answers no earlier "
                "assistant tool call"
            )
        raise TranslationError(f"{where}: a tool message needs the tool_call_id it answers")
    text = "".join(_texts(message.content, where))
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    response = value if isinstance(value, dict) else {"output": value}
    return {"functionResponse": {"name": name, "response": response}}


def _function_declarations(tools: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    declarations = []
    for number, tool in enumerate(tools):
        function = function_tool(tool, number, vendor="Gemini")
        declaration: dict[str, Any] = {"name": function.name}
        if function.description:
            declaration["description"] = function.description
        if function.parameters is not None:
            declaration["parametersJsonSchema"] = function.parameters
        declarations.append(declaration)
    return declarations


def _calling_mode(
    choice: str | dict[str, Any] | None, declarations: Sequence[Mapping[str, Any]]
) -> tuple[str | None, list[str] | None]:
    """``(mode, allowedFunctionNames)`` for an OpenAI ``tool_choice``."""
    if choice is None:
        return None, None
    if isinstance(choice, str):
        modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
        if choice not in modes:
            raise TranslationError(f"tool_choice {choice!r} is not auto, none or required")
        return modes[choice], None
    known = {d["name"] for d in declarations}
    if choice.get("type") == "function":
        function = choice.get("function") or {}
        names = [function.get("name")]
        mode = "ANY"
    elif choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [(t.get("function") or {}).get("name") for t in allowed.get("tools") or []]
        mode = "ANY" if allowed.get("mode") == "required" else "AUTO"
    else:
        raise TranslationError(f"tool_choice type {choice.get('type')!r} is not supported")
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise TranslationError(f"tool_choice names tools that are not in tools: {unknown}")
    return mode, [str(name) for name in names]
