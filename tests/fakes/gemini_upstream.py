"""A fake Gemini API (Google AI Studio) upstream that really listens on loopback.

It speaks the Generative Language API's REST format, as its reference and the
official SDK (googleapis/python-genai) describe it:

- ``POST /v1beta/models/{model}:generateContent`` answers one
  ``GenerateContentResponse``; ``:streamGenerateContent?alt=sse`` answers them
  as Server-Sent Events (``data: {...}`` separated by CRLF CRLF, no terminator)
  and, without ``alt=sse``, as one JSON array.
- The key must be in ``x-goog-api-key``: none is 403 PERMISSION_DENIED, a
  wrong one 400 INVALID_ARGUMENT with ``API_KEY_INVALID`` (as Google does it).
- Errors are ``{"error": {"code", "message", "status", "details"}}``; a 429
  carries a ``google.rpc.RetryInfo`` detail rather than a Retry-After header.

It rejects, with the real API's wording where it is known, what the real API
rejects: unknown fields (only the lowerCamelCase names of the reference are
known, so it is a little stricter than Google, which also takes snake_case),
roles other than user/model, empty parts, consecutive turns of one role, a
function call turn that follows no user turn, function responses that do not
answer the function call turn before them one for one, bad base64, both
``parameters`` and ``parametersJsonSchema``, and, for ``gemini-3*`` models,
function calls replayed without a thought signature it issued (or Google's
``skip_thought_signature_validator`` sentinel), and a ``thinkingConfig`` outside
Gemini's ranges (a ``thinkingLevel`` before Gemini 3, both a budget and a level).

Replies echo the last user turn ("echo: <text>"); "call_tool" in it (with
tools) makes the model call the first allowed function, "call_two_tools" call
it twice, "block_prompt" blocks the prompt (``promptFeedback.blockReason``),
"unsafe_reply" ends the candidate with ``finishReason: SAFETY``. Faults are
the shared ones (``tests.fakes.upstream``: `Fault`, scripted or in the
``x-fake-fault`` header), with Google-shaped error bodies.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from typing import Any

from tests.fakes.faults import Fault
from tests.fakes.server import Reply
from tests.fakes.upstream import Call, KeyedUpstream, RecordedRequest

__all__ = ["SKIP_SIGNATURE", "FakeGemini", "Fault", "RecordedRequest", "google_error"]

SKIP_SIGNATURE = "skip_thought_signature_validator"
DEFAULT_KEY = "AIzaSy-fake-gemini-key-0123456789"

_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_TOP = {
    "contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
    "safetySettings", "cachedContent",
}  # fmt: skip
_GENERATION = {
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
    "presencePenalty", "frequencyPenalty", "seed", "responseMimeType", "responseSchema",
    "responseJsonSchema", "responseLogprobs", "logprobs", "thinkingConfig",
    "responseModalities", "mediaResolution",
}  # fmt: skip
_PART_DATA = {
    "text", "inlineData", "fileData", "functionCall", "functionResponse",
    "executableCode", "codeExecutionResult",
}  # fmt: skip
_PART_META = {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
_MODES = {"AUTO", "ANY", "NONE", "VALIDATED"}
_PIECES = re.compile(r"\s*\S+|\s+$").findall
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def google_error(
    code: int,
    message: str | None = None,
    *,
    details: list[dict[str, Any]] | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """Google's error body for an HTTP status."""
    error: dict[str, Any] = {
        "code": code,
        "message": message or _MESSAGES.get(code, f"HTTP {code}"),
        "status": status or _STATUS.get(code, "UNKNOWN" if code >= 500 else "FAILED_PRECONDITION"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _retry_info(seconds: float | str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}


class _Invalid(Exception):
    """A request the real API answers with 400 INVALID_ARGUMENT."""


def _json(value: Any) -> bytes:
    return _dumps(value).encode()


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + _json(payload) + b"\r\n\r\n"


# ---------------------------------------------------------------- validation


def _unknown(value: dict[str, Any], known: set[str], where: str) -> None:
    for name in value:
        if name not in known:
            raise _Invalid(
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                "Cannot find field."
            )


def _validate(body: Any, model: str, signatures: set[str]) -> None:
    if not isinstance(body, dict):
        raise _Invalid("Invalid JSON payload received. Expected an object.")
    _unknown(body, _TOP, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    previous: dict[str, Any] | None = None
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise _Invalid(f"Invalid value at '{where}': expected an object.")
        _unknown(content, {"role", "parts"}, where)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _Invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _Invalid(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            _validate_part(part, f"{where}.parts[{j}]", role)
        if previous is not None and previous.get("role", "user") == role:
            raise _Invalid(
                "Please ensure that multiturn requests alternate between user and model."
            )
        calls = [p for p in parts if "functionCall" in p]
        answers = [p for p in parts if "functionResponse" in p]
        if calls and previous is None:
            raise _Invalid(
                "Please ensure that function call turn comes immediately after a user turn "
                "or after a function response turn."
            )
        earlier = [p for p in (previous or {}).get("parts", []) if "functionCall" in p]
        if answers and not earlier:
            raise _Invalid(
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if earlier and len(answers) != len(earlier):
            raise _Invalid(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
        if calls and model.startswith("gemini-3"):
            signature = calls[0].get("thoughtSignature")
            if signature is None:
                raise _Invalid(
                    "Function call is missing a thought_signature in functionCall parts. This "
                    "is required for tools to work correctly, and missing thought_signature may "
                    "lead to degraded model performance. Additional data, function call "
                    f"`default_api:{calls[0]['functionCall'].get('name')}` , position {i + 1}. "
                    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                    "for more details."
                )
            if signature != SKIP_SIGNATURE and signature not in signatures:
                raise _Invalid("Corrupted thought signature.")
        previous = content
    _validate_system(body.get("systemInstruction"))
    names = _validate_tools(body.get("tools"))
    _validate_tool_config(body.get("toolConfig"), names)
    _validate_generation(body.get("generationConfig"), model)


def _validate_part(part: Any, where: str, role: str) -> None:
    if not isinstance(part, dict):
        raise _Invalid(f"Invalid value at '{where}': expected an object.")
    _unknown(part, _PART_DATA | _PART_META, where)
    data = [name for name in part if name in _PART_DATA]
    if len(data) != 1:
        raise _Invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have "
            "one initialized field\n"
        )
    if "text" in part and not isinstance(part["text"], str):
        raise _Invalid(f"Invalid value at '{where}.text' (TYPE_STRING)")
    if "inlineData" in part:
        blob = part["inlineData"]
        if not isinstance(blob, dict) or not blob.get("mimeType") or "data" not in blob:
            raise _Invalid(
                f"* GenerateContentRequest.{where}.inline_data: mimeType and data are required\n"
            )
        try:
            base64.b64decode(blob["data"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _Invalid(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding "
                f'failed for "{str(blob["data"])[:40]}"'
            ) from None
    if "fileData" in part:
        file = part["fileData"]
        if not isinstance(file, dict) or not file.get("fileUri") or not file.get("mimeType"):
            raise _Invalid(
                f"* GenerateContentRequest.{where}.file_data: fileUri and mimeType are required\n"
            )
    if "functionCall" in part:
        _validate_function_part(part["functionCall"], where, role, "model", "call", "args")
    if "functionResponse" in part:
        _validate_function_part(
            part["functionResponse"], where, role, "user", "response", "response"
        )


def _validate_function_part(
    value: Any, where: str, role: str, author: str, noun: str, struct: str
) -> None:
    """A functionCall (from the model, ``args``) or functionResponse (from the
    user, ``response``): a name and a Struct."""
    field = f"function_{noun}"
    if role != author:
        raise _Invalid(
            f"* GenerateContentRequest.{where}: function {noun}s come from the {author}\n"
        )
    if not isinstance(value, dict) or not value.get("name"):
        raise _Invalid(f"* GenerateContentRequest.{where}.{field}.name: Name is required.\n")
    if not isinstance(value.get(struct, {} if noun == "call" else None), dict):
        raise _Invalid(
            f"Invalid value at '{where}.{field}.{struct}' (type.googleapis.com/google.protobuf.Struct)"
        )


def _validate_system(system: Any) -> None:
    if system is None:
        return
    if not isinstance(system, dict) or not isinstance(system.get("parts"), list):
        raise _Invalid("Invalid value at 'system_instruction': expected a Content with parts.")
    _unknown(system, {"role", "parts"}, "system_instruction")
    for j, part in enumerate(system["parts"]):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str) or len(part) != 1:
            raise _Invalid(
                f"* GenerateContentRequest.system_instruction.parts[{j}]: only text is supported\n"
            )


def _validate_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        raise _Invalid("Invalid value at 'tools': expected a list.")
    for i, tool in enumerate(tools):
        _unknown(
            tool,
            {"functionDeclarations", "googleSearch", "codeExecution", "urlContext"},
            f"tools[{i}]",
        )
        for j, declaration in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            _unknown(
                declaration,
                {
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                },
                where,
            )
            name = declaration.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
                raise _Invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start "
                    "with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), "
                    "underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
                    "length of 128.\n"
                )
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise _Invalid(
                    f"* GenerateContentRequest.{where}: parameters and parameters_json_schema are mutually exclusive\n"
                )
            if "parameters" in declaration and _mentions(
                declaration["parameters"], "additionalProperties"
            ):
                raise _Invalid(
                    'Invalid JSON payload received. Unknown name "additionalProperties" at '
                    f"'{where}.parameters': Cannot find field."
                )
            names.add(name)
    return names


def _mentions(schema: Any, key: str) -> bool:
    if isinstance(schema, dict):
        return key in schema or any(_mentions(v, key) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions(v, key) for v in schema)
    return False


def _validate_tool_config(config: Any, names: set[str]) -> None:
    if config is None:
        return
    _unknown(config, {"functionCallingConfig", "retrievalConfig"}, "tool_config")
    calling = config.get("functionCallingConfig") or {}
    _unknown(calling, {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
    mode = calling.get("mode", "AUTO")
    if mode not in _MODES:
        raise _Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', \"{mode}\"")
    allowed = calling.get("allowedFunctionNames")
    if allowed is not None:
        if mode not in ("ANY", "VALIDATED"):
            raise _Invalid(
                "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                "allowed_function_names is only allowed when mode is ANY.\n"
            )
        for name in allowed:
            if name not in names:
                raise _Invalid(
                    f"* GenerateContentRequest.tool_config: function {name!r} is not declared\n"
                )


def _validate_thinking(config: Any, model: str) -> None:
    """thinkingConfig: a budget (Gemini 2.5's ranges) or a level (Gemini 3), not both."""
    if config is None:
        return
    _unknown(config, {"thinkingBudget", "thinkingLevel", "includeThoughts"}, "thinking_config")
    budget, level = config.get("thinkingBudget"), config.get("thinkingLevel")
    where = "* GenerateContentRequest.generation_config.thinking_config"
    if budget is not None and level is not None:
        raise _Invalid(f"{where}: thinking_budget and thinking_level are mutually exclusive\n")
    if level is not None and not model.startswith("gemini-3"):
        raise _Invalid(f"{where}.thinking_level: not supported by this model\n")
    if level is not None and level.lower() not in ("minimal", "low", "medium", "high"):
        raise _Invalid(f"{where}.thinking_level: invalid value {level!r}\n")
    ranges = {"gemini-2.5-pro": (128, 32768), "gemini-2.5-flash-lite": (512, 24576)}
    low, high = next((r for p, r in ranges.items() if model.startswith(p)), (1, 24576))
    if budget is not None and budget not in (0, -1) and not low <= budget <= high:
        raise _Invalid(f"{where}.thinking_budget: must be in [{low}, {high}]\n")
    if budget == 0 and model.startswith("gemini-2.5-pro"):
        raise _Invalid("Budget 0 is invalid. This model only works in thinking mode.")


def _validate_generation(config: Any, model: str) -> None:
    if config is None:
        return
    _unknown(config, _GENERATION, "generation_config")
    temperature = config.get("temperature", 1.0)
    if not 0 <= temperature <= 2:
        raise _Invalid(
            "* GenerateContentRequest.generation_config.temperature: must be in [0, 2]\n"
        )
    if not 0 <= config.get("topP", 1.0) <= 1:
        raise _Invalid("* GenerateContentRequest.generation_config.top_p: must be in [0, 1]\n")
    if not 1 <= config.get("candidateCount", 1) <= 8:
        raise _Invalid(
            "* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]\n"
        )
    _validate_thinking(config.get("thinkingConfig"), model)
    if len(config.get("stopSequences") or []) > 5:
        raise _Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5\n")
    if "responseSchema" in config and "responseJsonSchema" in config:
        raise _Invalid(
            "* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive\n"
        )
    if ("responseSchema" in config or "responseJsonSchema" in config) and config.get(
        "responseMimeType"
    ) != "application/json":
        raise _Invalid(
            "* GenerateContentRequest.generation_config.response_mime_type: "
            "response_mime_type must be application/json when a response schema is set\n"
        )


# ---------------------------------------------------------------- responses


class _Generation:
    """One reply to a valid request, as a response body or a list of stream events."""

    def __init__(self, body: dict[str, Any], model: str, upstream: FakeGemini) -> None:
        self.body = body
        self.model = model
        self.upstream = upstream
        self.response_id = secrets.token_urlsafe(12)
        contents = body["contents"]
        last = contents[-1]
        parts = last["parts"] if last.get("role", "user") == "user" else []
        self.text = " ".join(p["text"] for p in parts if "text" in p).strip()
        media = [
            (p.get("inlineData") or p.get("fileData"))["mimeType"]
            for p in parts
            if "inlineData" in p or "fileData" in p
        ]
        answers = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if answers and not self.text:
            self.text = "result " + _dumps([a["response"] for a in answers])
        if media:
            self.text += " [" + ", ".join(media) + "]"
        system = (body.get("systemInstruction") or {}).get("parts", [])
        every = [p for c in contents for p in c["parts"]] + system
        self.prompt_tokens = sum(len(p["text"].split()) if "text" in p else 1 for p in every)
        config = body.get("generationConfig") or {}
        self.count = config.get("candidateCount", 1)
        self.calls = self._calls(body)
        self.block = "block_prompt" in self.text
        self.unsafe = "unsafe_reply" in self.text
        self.finish = "STOP"
        reply = "echo: " + self.text
        if config.get("responseMimeType") == "application/json":
            reply = _dumps({"echo": self.text})
        for stop in config.get("stopSequences") or []:
            if stop in reply:
                reply = reply[: reply.index(stop)]
        self.pieces: list[str] = _PIECES(reply)
        limit = config.get("maxOutputTokens")
        if isinstance(limit, int) and limit < len(self.pieces):
            del self.pieces[limit:]
            self.finish = "MAX_TOKENS"
        if self.unsafe:
            self.pieces, self.finish = [], "SAFETY"

    def _calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        declarations = [
            d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []
        ]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        if not declarations or mode == "NONE":
            return []
        allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declarations]
        wanted = "call_tool" in self.text or "call_two_tools" in self.text or mode == "ANY"
        if not wanted:
            return []
        times = 2 if "call_two_tools" in self.text else 1
        calls = []
        for number in range(times):
            part: dict[str, Any] = {
                "functionCall": {"name": allowed[0], "args": {"query": self.text, "n": number}}
            }
            if number == 0 and self.model.startswith(("gemini-2.5", "gemini-3")):
                signature = base64.b64encode(secrets.token_bytes(24)).decode()
                self.upstream.signatures.add(signature)
                part["thoughtSignature"] = signature
            calls.append(part)
        return calls

    def usage(self, final: bool = True) -> dict[str, Any]:
        cached = self.upstream.cached_tokens
        prompt = self.prompt_tokens + cached
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if cached:
            usage["cachedContentTokenCount"] = cached
        if not final or self.block:
            usage["totalTokenCount"] = prompt
            return usage
        output = (5 * len(self.calls) if self.calls else len(self.pieces)) * self.count
        thoughts = self.upstream.thoughts_tokens
        usage["candidatesTokenCount"] = output
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        usage["totalTokenCount"] = prompt + output + thoughts
        return usage

    def _candidate(
        self, index: int, parts: list[dict[str, Any]], finish: str | None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {}
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        if index:  # proto3 JSON leaves zero values out
            candidate["index"] = index
        if finish == "SAFETY":
            candidate["safetyRatings"] = [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                }
            ]
        return candidate

    def _envelope(self, candidates: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        if self.block:
            return {
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                "usageMetadata": self.usage(),
                "modelVersion": self.model,
                "responseId": self.response_id,
            }
        return {
            "candidates": candidates,
            "usageMetadata": self.usage(final),
            "modelVersion": self.model,
            "responseId": self.response_id,
        }

    def _text(self, index: int) -> str:
        return "".join(self.pieces) + (f" #{index}" if index and self.pieces else "")

    def response(self) -> dict[str, Any]:
        candidates = []
        for index in range(self.count):
            parts = self.calls or ([{"text": self._text(index)}] if self.pieces else [])
            candidates.append(self._candidate(index, parts, self.finish))
        return self._envelope(candidates, True)

    def events(self) -> list[dict[str, Any]]:
        if self.block:
            return [self._envelope([], True)]
        events = []
        if self.calls:
            for call in self.calls:
                events.append(
                    self._envelope(
                        [self._candidate(i, [call], None) for i in range(self.count)], False
                    )
                )
        else:
            for number, piece in enumerate(self.pieces):
                candidates = [
                    self._candidate(
                        i,
                        [
                            {
                                "text": piece
                                + (f" #{i}" if i and number == len(self.pieces) - 1 else "")
                            }
                        ],
                        None,
                    )
                    for i in range(self.count)
                ]
                events.append(self._envelope(candidates, False))
        last = [self._candidate(i, [{"text": ""}], self.finish) for i in range(self.count)]
        events.append(self._envelope(last, True))
        return events


# ---------------------------------------------------------------- public API


class FakeGemini(KeyedUpstream):
    """A fake Gemini API on its own thread and event loop.

    Takes `api_key` (the only key accepted, `DEFAULT_KEY` unless given; None
    accepts any) and the options every fake takes (`tests.fakes.upstream.Options`).
    """

    default_key = DEFAULT_KEY
    cached_tokens = 0
    thoughts_tokens = 0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.signatures: set[str] = set()  # thought signatures it issued

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)

    def answer(self, call: Call) -> Reply:
        early = self.early_fault(call)
        if early is not None:
            return early
        match = re.fullmatch(
            r"/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)", call.path
        )
        if match is None or call.method != "POST":
            return self.error(call, 404, f"Invalid URL ({call.method} {call.path})")
        model, action = match.groups()
        key = call.headers.get("x-goog-api-key")
        if not key:
            return self.error(
                call,
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if self.api_key is not None and key != self.api_key:
            return self._google(
                call, 400, "API key not valid. Please pass a valid API key.",
                details=[{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }],
            )  # fmt: skip
        if not model.startswith("gemini-"):
            return self.error(
                call,
                404,
                f"models/{model} is not found for API version v1beta, or is not supported "
                f"for {action}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        if call.bad_json:
            return self.error(call, 400, "Invalid JSON payload received. Unexpected token.")
        try:
            _validate(call.body, model, self.signatures)
        except _Invalid as exc:
            return self.error(call, 400, str(exc))
        generation = _Generation(call.body, model, self)
        failed = call.kind == "error_body_200"
        if action == "generateContent":
            if failed:
                return self.send(call, _json(google_error(500)), kind="ok")
            return self.send(call, _json(generation.response()))
        events = generation.events()
        if "alt=sse" not in call.query.split("&"):
            return self.send(call, _json(events))
        if failed:
            return self.send(call, events=[_event(google_error(500))], kind="ok")
        return self.send(call, events=[_event(e) for e in events])

    def error(
        self, call: Call | None, status: int, message: str | None = None, *,
        retry_after: float | str | None = None,
    ) -> Reply:  # fmt: skip
        """Google's error; a retry delay goes in a RetryInfo detail, not a header."""
        details = [_retry_info(retry_after)] if retry_after is not None else None
        return self._google(call, status, message, details=details)

    def _google(self, call: Call | None, status: int, message: str | None, **more: Any) -> Reply:
        return self.reject(call, status, google_error(status, message, **more))

    def fault_status(self, call: Call, fault: Fault) -> Reply:
        if fault.body is not None:  # verbatim, and Google sends no Retry-After
            return self.reject(call, fault.code, fault.body)
        return self.error(call, fault.code, retry_after=fault.retry_after)

    def usage(self, *, cached_tokens: int = 0, thoughts_tokens: int = 0) -> None:
        """Report these cached and thinking tokens in every reply's usageMetadata."""
        self.cached_tokens = cached_tokens
        self.thoughts_tokens = thoughts_tokens

    def reset(self) -> None:
        super().reset()
        self.usage()
