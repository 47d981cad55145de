"""Reading the parts of an OpenAI chat request that every translation reads.

Content parts, data: URLs, tools, tool calls and ``tool_choice`` are read the
same way for every vendor, with the same messages when they are wrong; what a
vendor makes of them stays in its own translation. Each function raises
``TranslationError`` (a BAD_REQUEST ``ProviderError``) naming where in the
request the problem is.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from turnout.errors import FailureClass, ProviderError

__all__ = [
    "DataURL",
    "FunctionTool",
    "ToolCall",
    "ToolChoice",
    "TranslationError",
    "append_turn",
    "arguments",
    "data_url",
    "function_tool",
    "image_url",
    "path_segment",
    "text_parts",
    "tool_call",
    "tool_choice",
]


class TranslationError(ProviderError, ValueError):
    """A request a vendor cannot be given as it stands; the message says what to fix.

    A ``ProviderError`` of class BAD_REQUEST, so a provider need not convert it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(FailureClass.BAD_REQUEST, message)


# data:[<media type>][;<parameter>]*;base64,<data> (RFC 2397); only base64 is read
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*?);base64,", re.I)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class DataURL:
    """A base64 ``data:`` URL: its media type (lower case) and its base64 text."""

    media_type: str
    data: str


def data_url(url: str, where: str) -> DataURL | None:
    """The parts of a base64 ``data:`` URL, or None for any other URL.

    Media-type parameters (``;charset=...``, ``;name=...``) are allowed and
    dropped; white space in the data is removed.

    :raises TranslationError: a ``data:`` URL without a media type, or not base64.
    """
    text = url.strip()
    if text[:5].lower() != "data:":
        return None
    match = _DATA_URL.match(text)
    if match is None:
        raise TranslationError(f"{where}: data: URLs must be base64 (data:<type>;base64,...)")
    media_type = match["type"]
    if not media_type:
        raise TranslationError(f"{where}: the data: URL needs a media type")
    return DataURL(media_type.lower(), _SPACE.sub("", text[match.end() :]))


def append_turn(
    turns: list[dict[str, Any]], role: str, blocks: list[Any], *, key: str = "content"
) -> None:
    """Add a turn of ``blocks``, merged into the last turn when it has the same
    role (vendors that want user and assistant turns to alternate); empty
    ``blocks`` add nothing."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(blocks)
    else:
        turns.append({"role": role, key: blocks})


_UNSAFE_IN_PATH = ("?", "#", "\r", "\n", "\\", "%")


def path_segment(value: str, what: str = "model", *, safe: str = "") -> str:
    """``value`` percent-encoded as one URL path segment (``/`` too, unless in
    ``safe``), so a model name can never leave the path the policy configured.

    :raises TranslationError: ``value`` is empty, is or holds a ``.``/``..``
        segment, or holds ``?``, ``#``, ``%``, a backslash, CR or LF.
    """
    if not value or any(c in value for c in _UNSAFE_IN_PATH) or not value.isprintable():
        raise TranslationError(f"{what} {value!r} cannot be sent in a URL path")
    if any(part in (".", "..") for part in value.replace("\\", "/").split("/")):
        raise TranslationError(f"{what} {value!r} cannot be sent in a URL path")
    return urllib.parse.quote(value, safe=safe)


def image_url(part: Mapping[str, Any], where: str) -> str:
    """The URL of an ``image_url`` content part (the object form or a bare string).

    :raises TranslationError: the part has no URL.
    """
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where}: image_url needs a url")
    return url


def text_parts(content: Any, where: str) -> list[str]:
    """The texts of a content that may hold only text (system, assistant, tool messages).

    A string is one text; ``refusal`` parts count as text.

    :raises TranslationError: a part that is not text, naming it.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for number, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise TranslationError(
                f"{where}.content[{number}]: only text is allowed here, not {kind!r}"
            )
        text = part.get(kind)
        if text is not None and not isinstance(text, str):
            raise TranslationError(f"{where}.content[{number}]: {kind} part without {kind!r}")
        texts.append(text or "")
    return texts


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A function tool of ``tools``; ``parameters`` is None when it declares none."""

    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None
    tool: Mapping[str, Any]
    """The tool as the request sent it (for vendor fields such as ``cache_control``)."""


def function_tool(tool: Mapping[str, Any], number: int, *, vendor: str = "") -> FunctionTool:
    """Tool ``tools[number]``, which must be a function tool with a name.

    :raises TranslationError: another type of tool, or no name.
    """
    function = tool.get("function")
    if tool.get("type", "function") != "function" or not isinstance(function, Mapping):
        by = f" by {vendor}" if vendor else ""
        raise TranslationError(
            f"tools[{number}]: only function tools are supported{by}, not {tool.get('type')!r}"
        )
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"tools[{number}].function: needs a name")
    parameters = function.get("parameters")
    description = function.get("description")
    strict = function.get("strict")
    return FunctionTool(
        name,
        str(description) if description else None,
        parameters if isinstance(parameters, dict) else None,
        strict if isinstance(strict, bool) else None,
        tool,
    )


def arguments(raw: Any, where: str) -> dict[str, Any]:
    """A tool call's ``function.arguments`` as an object (``""`` and None are ``{}``).

    :raises TranslationError: not JSON, or JSON that is not an object.
    """
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise TranslationError(f"{where}: function.arguments is not valid JSON") from None
    if not isinstance(value, dict):
        raise TranslationError(f"{where}: function.arguments must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call in an assistant message's ``tool_calls``."""

    id: str | None
    name: str
    arguments: dict[str, Any]
    call: Mapping[str, Any]
    """The call as the request sent it (for vendor fields such as signatures)."""


def tool_call(call: Mapping[str, Any], where: str, *, vendor: str = "") -> ToolCall:
    """The function call ``call``, its arguments parsed.

    :raises TranslationError: not a function call, no function name, or bad arguments.
    """
    function = call.get("function")
    if call.get("type", "function") != "function" or not isinstance(function, Mapping):
        by = f" by {vendor}" if vendor else ""
        raise TranslationError(f"{where}: only function tool calls are supported{by}")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}: the function needs a name")
    ident = call.get("id")
    return ToolCall(
        ident if isinstance(ident, str) and ident else None,
        name,
        arguments(function.get("arguments"), where),
        call,
    )


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``tool_choice`` read: the mode, and the tools it limits calls to (None: any)."""

    mode: Literal["auto", "none", "required"]
    names: tuple[str, ...] | None = None


def tool_choice(choice: Any, tools: Sequence[FunctionTool] = ()) -> ToolChoice | None:
    """The request's ``tool_choice`` (None when it sets none).

    ``{"type": "function", ...}`` is ``required`` limited to that tool;
    ``allowed_tools`` is its mode limited to its tools.

    :param tools: the request's tools; named tools must be among them.
    :raises TranslationError: an unknown mode or type, or a name not in ``tools``.
    """
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise TranslationError(f"tool_choice {choice!r} is not auto, none or required")
        return ToolChoice(choice)  # type: ignore[arg-type]
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "function":
        names = [(choice.get("function") or {}).get("name")]
        mode = "required"
    elif kind == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [(t.get("function") or {}).get("name") for t in allowed.get("tools") or []]
        mode = "required" if allowed.get("mode") == "required" else "auto"
    else:
        raise TranslationError(f"tool_choice type {kind!r} is not supported")
    known = {tool.name for tool in tools}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise TranslationError(f"tool_choice names tools that are not in tools: {unknown}")
    return ToolChoice(mode, tuple(str(name) for name in names))  # type: ignore[arg-type]
