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
        else:
            label = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
            label = label or "value"
            message = f"{label}: {_describe(error)}"
        problems.append(doc.problem(path, message, hint))
    return problems
