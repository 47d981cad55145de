"""Turn pydantic validation errors into policy problems a person can act on."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from turnout.errors import Problem
from turnout.policy.loader import Document
from turnout.types import JSONPath

__all__ = ["allowed_keys", "problems_from_validation"]


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold (through Optional, list, dict, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        args = typing.get_args(annotation)
        if origin is dict:
            args = args[1:]
        return [m for a in args for m in _unwrap(a)]
    return (
        [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []
    )


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at ``loc`` below ``model`` (empty if unknown)."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        following: list[type[BaseModel]] = []
        for cls in current:
            field = cls.model_fields.get(str(part))
            if field is not None:
                following += _unwrap(field.annotation)
            else:  # a dict key: the dict's value models
                following.append(cls)
        current = following
    return sorted({name for cls in current for name in cls.model_fields})


def _describe(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[0].lower() + message[1:] if message else message


def problems_from_validation(
    exc: ValidationError, model: type[BaseModel], doc: Document, prefix: JSONPath
) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part))
        path = (*prefix, *loc)
        key = loc[-1] if loc else None
        hint = None
        if error["type"] == "extra_forbidden":
            known = allowed_keys(model, loc[:-1])
            close = difflib.get_close_matches(str(key), known, n=1)
            message = f"unknown key {key!r}"
            hint = (
                (f"did you mean {close[0]!r}? " if close else "")
                + "allowed keys: "
                + ", ".join(known)
            )
        elif error["type"] == "missing":
            message = f"missing required key {key!r}"
        elif error["type"] in _NOT_A_MAPPING and (expected := _model_at(model, loc)) is not None:
            message, hint = _not_a_mapping(path, expected, error.get("input"))
        else:
            label = _label(loc) or _label(prefix) or "value"
            message = f"{label}: {_describe(error)}"
        misplaced = _misplaced(model, prefix)
        if misplaced:
            keep = hint and error["type"] not in _NOT_A_MAPPING
            hint = f"{misplaced}; {hint}" if keep else misplaced
        problems.append(doc.problem(path, message, hint))
    return problems


_NOT_A_MAPPING = ("model_type", "model_attributes_type", "dict_type")


def _label(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class expected at ``loc`` below ``model``, if one is."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        following: list[type[BaseModel]] = []
        for cls in current:
            field = cls.model_fields.get(str(part))
            following += _unwrap(field.annotation) if field is not None else [cls]
        current = following
    return current[0] if current else None


def _not_a_mapping(path: JSONPath, expected: type[BaseModel], given: Any) -> tuple[str, str]:
    """'providers.mock must be a mapping', with the keys it takes and, when the value
    is empty or a bare word, the indentation mistake that usually causes it."""
    label = _label(tuple(path)) or "the policy"
    required = [n for n, f in expected.model_fields.items() if f.is_required()]
    shape = "{" + ", ".join(f"{n}: ..." for n in required) + "}" if required else "{...}"
    name = str(path[-1]) if path else "key"
    if given is None:
        message = f"{label} is empty; it must be a mapping like {shape}"
        hint = f"if the lines below {name}: belong to it, indent them further than {name}:"
    else:
        message = f"{label} must be a mapping like {shape}, not {given!r}"
        hint = f"write it as {name}: {shape} or as indented key: value lines under {name}:"
    return message, f"{hint}; keys it takes: {', '.join(expected.model_fields)}"


def _misplaced(model: type[BaseModel], prefix: JSONPath) -> str | None:
    """A key of an entry read as an entry's name (``options:`` dedented to the level
    of provider names is read as a provider called 'options'): say so."""
    if len(prefix) < 2 or not isinstance(prefix[-1], str) or prefix[-1] not in model.model_fields:
        return None
    return (
        f"{prefix[-1]!r} is read as an entry named {prefix[-1]!r} under {_label(prefix[:-1])}; "
        f"if it belongs to the entry above, indent it under that entry"
    )
