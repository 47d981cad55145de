"""``json_schema``: the output must be the JSON the request's ``response_format`` asked for.

Only requests with ``response_format: {type: json_schema, json_schema: {schema}}``
(validated against the schema) or ``{type: json_object}`` (must parse to an
object) are checked. On failure the attempt is retried (``action: retry``),
the next target tried (``fallback``, the default), or the request refused
(``block``). On streams the text has gone out already, so any failure ends
the stream with an error event.

The schema comes from the caller, so validating with it must cost bounded
work. It is validated by jsonschema-rs (JSON Schema, drafts 4 to 2020-12)
with its linear-time regex engine, never fetching a remote ``$ref``, and a
schema is refused up front, a 400 naming ``response_format.json_schema.schema``,
when it is larger than ``MAX_SCHEMA_BYTES``, when its ``$ref``s expand to more
than ``MAX_EXPANDED`` subschemas (a chain of references that doubles at each
step), or when jsonschema-rs cannot compile it (a ``pattern`` with a
lookaround, a ``$ref`` to a document elsewhere). A recursive schema (a tree
of nodes) is allowed: its recursion is bounded by the output's own depth.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema_rs
from pydantic import BaseModel, ConfigDict
from turnout import ChatRequest, Guardrail, TurnoutError

__all__ = ["MAX_EXPANDED", "MAX_SCHEMA_BYTES", "JsonSchema", "schema_errors"]

MAX_SCHEMA_BYTES = 64 * 1024
MAX_EXPANDED = 10_000
PARAM = "response_format.json_schema.schema"


def _refused(why: str) -> TurnoutError:
    return TurnoutError(f"{PARAM}: {why}", status_code=400, code="invalid_json_schema", param=PARAM)


def _pointer(root: Any, ref: str) -> Any:
    node = root
    for part in ref[2:].split("/") if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def expanded_size(schema: Any, limit: int = MAX_EXPANDED) -> int:
    """How many subschemas ``schema`` holds with each local ``$ref`` replaced by
    its target (a reference back into its own expansion counts once), up to
    ``limit + 1``: the work one value's validation can take, per level."""
    memo: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: Any) -> int:
        if isinstance(node, list):
            return sum(size(item) for item in node) + 1
        if not isinstance(node, dict):
            return 1
        key = id(node)
        if key in on_path:
            return 1
        if key in memo:
            return memo[key]
        on_path.add(key)
        total = 1
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target = _pointer(schema, ref)
            if target is not None:
                total += size(target)
        for name, item in node.items():
            if name not in ("$ref", "enum", "const", "examples", "default") and total <= limit:
                total += size(item)
        on_path.discard(key)
        memo[key] = total = min(total, limit + 1)
        return total

    return size(schema)


@lru_cache(maxsize=256)
def _validator(text: str) -> Any:
    schema = json.loads(text)
    if expanded_size(schema) > MAX_EXPANDED:
        raise _refused(
            f"its $refs expand to more than {MAX_EXPANDED} subschemas; "
            "a schema must stay small once its references are followed"
        )
    try:
        return jsonschema_rs.validator_for(
            schema, pattern_options=jsonschema_rs.RegexOptions(), offline=True
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _refused(f"not a schema this gateway runs ({first})") from None


def validator_of(request: ChatRequest) -> Any:
    """The compiled validator of a request's schema (None without one); TurnoutError 400
    for a schema that is too large, expands too far or does not compile."""
    fmt = request.response_format
    if not fmt or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is None:
        return None
    if not isinstance(schema, dict | bool):
        raise _refused("must be an object")
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_SCHEMA_BYTES:
        raise _refused(f"is {len(text)} bytes of JSON; at most {MAX_SCHEMA_BYTES} are accepted")
    return _validator(text)


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_errors(value: Any, schema: Any) -> str | None:
    """The first way ``value`` fails ``schema``, as ``path: reason``; None if it conforms."""
    validator = jsonschema_rs.validator_for(
        schema, pattern_options=jsonschema_rs.RegexOptions(), offline=True
    )
    return _first_error(validator, value)


def _first_error(validator: Any, value: Any) -> str | None:
    error = next(validator.iter_errors(value), None)
    if error is None:
        return None
    return f"{_path(error.instance_path)}: {error.message}"


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
        except (ValueError, RecursionError) as exc:
            where = f" ({exc.msg} at character {exc.pos})" if hasattr(exc, "pos") else ""
            return f"the output is not JSON{where}"
        if kind == "json_object":
            return None if isinstance(value, dict) else "the output is not a JSON object"
        validator = validator_of(request)
        if validator is None:
            return None
        error = _first_error(validator, value)
        return f"the output does not match the schema: {error}" if error else None
