"""``json_schema``: the output must be the JSON the request's ``response_format`` asked for.

Only requests with ``response_format: {type: json_schema, json_schema: {schema}}``
(validated against the schema) or ``{type: json_object}`` (must parse to an
object) are checked. On failure the attempt is retried (``action: retry``),
the next target tried (``fallback``, the default), or the request refused
(``block``). On streams the text has gone out already, so any failure ends
the stream with an error event.

The validator covers the JSON Schema subset structured outputs use: ``type``
(one or a list), ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``prefixItems``, ``minItems`` / ``maxItems``,
``minLength`` / ``maxLength``, ``pattern``, ``minimum`` / ``maximum`` (and the
exclusive forms), ``anyOf`` / ``oneOf`` / ``allOf``, and local ``$ref``
(``#/$defs/...``, ``#/definitions/...``). Other keywords are not checked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from turnout import ChatRequest, Guardrail

__all__ = ["JsonSchema", "schema_errors"]

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    kind = _TYPES.get(name)
    return kind is None or isinstance(value, kind)


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = (
            node.get(part.replace("~1", "/").replace("~0", "~"), {})
            if isinstance(node, dict)
            else {}
        )
    return node


def schema_errors(value: Any, schema: Any, root: Any = None, path: str = "$") -> str | None:
    """The first way ``value`` fails ``schema``, as ``path: reason``; None if it conforms."""
    if not isinstance(schema, dict):
        return None if schema is not False else f"{path}: not allowed"
    root = schema if root is None else root
    if "$ref" in schema:
        return schema_errors(value, _resolve(schema["$ref"], root), root, path)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            return f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} is not one of {schema['enum']!r}"
    if "const" in schema and value != schema["const"]:
        return f"{path}: must be {schema['const']!r}"
    for key in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(key)
        if not isinstance(subs, list):
            continue
        results = [schema_errors(value, s, root, path) for s in subs]
        passed = sum(r is None for r in results)
        if key == "allOf" and passed < len(subs):
            return next(r for r in results if r is not None)
        if key == "anyOf" and not passed:
            return f"{path}: matches none of anyOf ({results[0]})"
        if key == "oneOf" and passed != 1:
            return f"{path}: matches {passed} of oneOf, not exactly one"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}: missing required property {name!r}"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                error = schema_errors(item, props[name], root, f"{path}.{name}")
            elif extra is False:
                error = f"{path}: unexpected property {name!r}"
            else:
                error = schema_errors(item, extra, root, f"{path}.{name}")
            if error:
                return error
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{path}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{path}: more than {schema['maxItems']} items"
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if sub is not None and (error := schema_errors(item, sub, root, f"{path}[{i}]")):
                return error
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']}"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{path}: does not match {schema['pattern']!r}"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        checks = (
            ("minimum", lambda v, b: v >= b),
            ("maximum", lambda v, b: v <= b),
            ("exclusiveMinimum", lambda v, b: v > b),
            ("exclusiveMaximum", lambda v, b: v < b),
        )
        for key, ok in checks:
            bound = schema.get(key)
            if isinstance(bound, int | float) and not ok(value, bound):
                return f"{path}: {value} violates {key} {bound}"
    return None


class JsonSchemaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JsonSchema(Guardrail):
    Options = JsonSchemaOptions
    default_on = "output"
    default_action = "fallback"
    actions = ("retry", "fallback", "block", "log")

    def check_output(self, text: str, request: ChatRequest) -> str | None:
        fmt = request.response_format
        if not fmt:
            return None
        kind = fmt.get("type")
        if kind not in ("json_schema", "json_object"):
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"the output is not JSON ({exc.msg} at character {exc.pos})"
        if kind == "json_object":
            return None if isinstance(value, dict) else "the output is not a JSON object"
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            return None
        error = schema_errors(value, schema)
        return f"the output does not match the schema: {error}" if error else None
