"""The Gemini API's request checks, as the fake Gemini upstream applies them.

`validate` raises `Invalid` (a 400 INVALID_ARGUMENT, with the real API's
wording where it is known) for what ``POST /v1beta/models/{model}:generateContent``
rejects; `tests.fakes.gemini_upstream` says which rules, and answers.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

__all__ = ["SKIP_SIGNATURE", "Invalid", "validate"]

SKIP_SIGNATURE = "skip_thought_signature_validator"
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


class Invalid(Exception):
    """A request the real API answers with 400 INVALID_ARGUMENT."""


def _unknown(value: dict[str, Any], known: set[str], where: str) -> None:
    for name in value:
        if name not in known:
            raise Invalid(
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                "Cannot find field."
            )


def validate(body: Any, model: str, signatures: set[str]) -> None:
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Expected an object.")
    _unknown(body, _TOP, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    previous: dict[str, Any] | None = None
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise Invalid(f"Invalid value at '{where}': expected an object.")
        _unknown(content, {"role", "parts"}, where)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Invalid(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            _validate_part(part, f"{where}.parts[{j}]", role)
        if previous is not None and previous.get("role", "user") == role:
            raise Invalid("Please ensure that multiturn requests alternate between user and model.")
        calls = [p for p in parts if "functionCall" in p]
        answers = [p for p in parts if "functionResponse" in p]
        if calls and previous is None:
            raise Invalid(
                "Please ensure that function call turn comes immediately after a user turn "
                "or after a function response turn."
            )
        earlier = [p for p in (previous or {}).get("parts", []) if "functionCall" in p]
        if answers and not earlier:
            raise Invalid(
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if earlier and len(answers) != len(earlier):
            raise Invalid(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
        if calls and model.startswith("gemini-3"):
            signature = calls[0].get("thoughtSignature")
            if signature is None:
                raise Invalid(
                    "Function call is missing a thought_signature in functionCall parts. This "
                    "is required for tools to work correctly, and missing thought_signature may "
                    "lead to degraded model performance. Additional data, function call "
                    f"`default_api:{calls[0]['functionCall'].get('name')}` , position {i + 1}. "
                    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                    "for more details."
                )
            if signature != SKIP_SIGNATURE and signature not in signatures:
                raise Invalid("Corrupted thought signature.")
        previous = content
    _validate_system(body.get("systemInstruction"))
    names = _validate_tools(body.get("tools"))
    _validate_tool_config(body.get("toolConfig"), names)
    _validate_generation(body.get("generationConfig"), model)


def _validate_part(part: Any, where: str, role: str) -> None:
    if not isinstance(part, dict):
        raise Invalid(f"Invalid value at '{where}': expected an object.")
    _unknown(part, _PART_DATA | _PART_META, where)
    data = [name for name in part if name in _PART_DATA]
    if len(data) != 1:
        raise Invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have "
            "one initialized field\n"
        )
    if "text" in part and not isinstance(part["text"], str):
        raise Invalid(f"Invalid value at '{where}.text' (TYPE_STRING)")
    if "inlineData" in part:
        blob = part["inlineData"]
        if not isinstance(blob, dict) or not blob.get("mimeType") or "data" not in blob:
            raise Invalid(
                f"* GenerateContentRequest.{where}.inline_data: mimeType and data are required\n"
            )
        try:
            base64.b64decode(blob["data"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise Invalid(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding "
                f'failed for "{str(blob["data"])[:40]}"'
            ) from None
    if "fileData" in part:
        file = part["fileData"]
        if not isinstance(file, dict) or not file.get("fileUri") or not file.get("mimeType"):
            raise Invalid(
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
        raise Invalid(
            f"* GenerateContentRequest.{where}: function {noun}s come from the {author}\n"
        )
    if not isinstance(value, dict) or not value.get("name"):
        raise Invalid(f"* GenerateContentRequest.{where}.{field}.name: Name is required.\n")
    if not isinstance(value.get(struct, {} if noun == "call" else None), dict):
        raise Invalid(
            f"Invalid value at '{where}.{field}.{struct}' (type.googleapis.com/google.protobuf.Struct)"
        )


def _validate_system(system: Any) -> None:
    if system is None:
        return
    if not isinstance(system, dict) or not isinstance(system.get("parts"), list):
        raise Invalid("Invalid value at 'system_instruction': expected a Content with parts.")
    _unknown(system, {"role", "parts"}, "system_instruction")
    for j, part in enumerate(system["parts"]):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str) or len(part) != 1:
            raise Invalid(
                f"* GenerateContentRequest.system_instruction.parts[{j}]: only text is supported\n"
            )


def _validate_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        raise Invalid("Invalid value at 'tools': expected a list.")
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
                raise Invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start "
                    "with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), "
                    "underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
                    "length of 128.\n"
                )
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise Invalid(
                    f"* GenerateContentRequest.{where}: parameters and parameters_json_schema are mutually exclusive\n"
                )
            if "parameters" in declaration and _mentions(
                declaration["parameters"], "additionalProperties"
            ):
                raise Invalid(
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
        raise Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', \"{mode}\"")
    allowed = calling.get("allowedFunctionNames")
    if allowed is not None:
        if mode not in ("ANY", "VALIDATED"):
            raise Invalid(
                "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                "allowed_function_names is only allowed when mode is ANY.\n"
            )
        for name in allowed:
            if name not in names:
                raise Invalid(
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
        raise Invalid(f"{where}: thinking_budget and thinking_level are mutually exclusive\n")
    if level is not None and not model.startswith("gemini-3"):
        raise Invalid(f"{where}.thinking_level: not supported by this model\n")
    if level is not None and level.lower() not in ("minimal", "low", "medium", "high"):
        raise Invalid(f"{where}.thinking_level: invalid value {level!r}\n")
    ranges = {"gemini-2.5-pro": (128, 32768), "gemini-2.5-flash-lite": (512, 24576)}
    low, high = next((r for p, r in ranges.items() if model.startswith(p)), (1, 24576))
    if budget is not None and budget not in (0, -1) and not low <= budget <= high:
        raise Invalid(f"{where}.thinking_budget: must be in [{low}, {high}]\n")
    if budget == 0 and model.startswith("gemini-2.5-pro"):
        raise Invalid("Budget 0 is invalid. This model only works in thinking mode.")


def _validate_generation(config: Any, model: str) -> None:
    if config is None:
        return
    _unknown(config, _GENERATION, "generation_config")
    temperature = config.get("temperature", 1.0)
    if not 0 <= temperature <= 2:
        raise Invalid("* GenerateContentRequest.generation_config.temperature: must be in [0, 2]\n")
    if not 0 <= config.get("topP", 1.0) <= 1:
        raise Invalid("* GenerateContentRequest.generation_config.top_p: must be in [0, 1]\n")
    if not 1 <= config.get("candidateCount", 1) <= 8:
        raise Invalid(
            "* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]\n"
        )
    _validate_thinking(config.get("thinkingConfig"), model)
    if len(config.get("stopSequences") or []) > 5:
        raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5\n")
    if "responseSchema" in config and "responseJsonSchema" in config:
        raise Invalid(
            "* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive\n"
        )
    if ("responseSchema" in config or "responseJsonSchema" in config) and config.get(
        "responseMimeType"
    ) != "application/json":
        raise Invalid(
            "* GenerateContentRequest.generation_config.response_mime_type: "
            "response_mime_type must be application/json when a response schema is set\n"
        )
