"""Compiling the parts of a policy that name a plugin type (strategies, guardrails):
find the registered class, validate its ``Options``, build it — each failure a
problem at the entry's place in the file, never an exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from turnout.types import JSONPath

__all__ = ["build", "did_you_mean", "find_type"]

T = TypeVar("T")

Report = Callable[[JSONPath, str, "str | None"], None]
Validate = Callable[[type[BaseModel], Any, JSONPath], Any]


def did_you_mean(name: str, known: list[str], what: str) -> str:
    """The hint for an unknown name: the closest known one, and all of them."""
    close = difflib.get_close_matches(name, known, n=1)
    if not known and what == "providers":
        return (
            "no providers are declared: add one under providers:, e.g. mock: {type: mock} "
            "(even the built-in mock must be declared)"
        )
    known_text = ", ".join(sorted(known)) or "none"
    return (f"did you mean {close[0]!r}? " if close else "") + f"known {what}: {known_text}"


def find_type(
    classes: Mapping[str, type[T]],
    name: str,
    where: JSONPath,
    kind: str,
    positions: Collection[JSONPath],
    report: Report,
) -> type[T] | None:
    """The class registered as ``name``, or None with an "unknown <kind>" problem."""
    cls = classes.get(name)
    if cls is None:
        report(
            (*where, "type") if (*where, "type") in positions else where,
            f"unknown {kind} {name!r}",
            did_you_mean(
                name, list(classes), f"{kind.rstrip('y')}ies" if kind.endswith("y") else f"{kind}s"
            ),
        )
    return cls


def build(
    cls: type[T],
    options: Any,
    where: JSONPath,
    label: str,
    report: Report,
    validate: Validate,
) -> T | None:
    """``cls(options)`` with the options validated by ``cls.Options`` (None: takes none)."""
    model = getattr(cls, "Options", None)
    parsed: Any = None
    if model is not None:
        parsed = validate(model, options, where)
        if parsed is None:
            return None
    elif options:
        report(where, f"{label} takes no options", None)
        return None
    try:
        return cls(parsed)  # type: ignore[call-arg]
    except Exception as exc:  # a plugin's constructor rejecting its options
        report(where, f"{label} could not be set up: {exc}", None)
        return None
