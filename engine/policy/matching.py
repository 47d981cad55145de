"""Route matching: compiled once per policy, a pure function per request."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from turnout.policy.models import Condition, Match
from turnout.wire.chat import ChatRequest

__all__ = ["CompiledCondition", "Matcher", "PatternSet", "covers"]

_GLOB_CHARS = frozenset("*?[")


def _is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


def covers(general: str, specific: str) -> bool:
    """Whether every name ``specific`` matches is matched by ``general`` too (conservative)."""
    return general == specific or fnmatch.fnmatchcase(specific, general)


@dataclass(frozen=True, slots=True)
class PatternSet:
    """Exact names and globs; matches a value if any of them does."""

    patterns: tuple[str, ...]
    exact: frozenset[str]
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, patterns: list[str]) -> PatternSet:
        globs = [p for p in patterns if _is_glob(p)]
        regex = (
            re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
        )
        exact = frozenset(p for p in patterns if not _is_glob(p))
        return cls(tuple(patterns), exact, regex)

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        if not isinstance(value, str):
            value = str(value)
        return value in self.exact or (
            self.regex is not None and self.regex.match(value) is not None
        )


_MISSING = object()


def _getter(field: str) -> Callable[[ChatRequest, Mapping[str, str], int], Any]:
    """A function reading ``field`` from (request, headers, prompt_tokens), or _MISSING."""
    if field == "prompt_tokens":
        return lambda request, headers, tokens: tokens
    if field == "max_tokens":
        return lambda request, headers, tokens: _or_missing(request.output_limit)
    if field == "messages":
        return lambda request, headers, tokens: len(request.messages)
    if field.startswith("metadata."):
        key = field.removeprefix("metadata.")
        return lambda request, headers, tokens: (request.metadata or {}).get(key, _MISSING)
    if field.startswith("header."):
        name = field.removeprefix("header.").lower()
        return lambda request, headers, tokens: headers.get(name, _MISSING)
    return lambda request, headers, tokens: _or_missing(getattr(request, field, None))


def _or_missing(value: Any) -> Any:
    return _MISSING if value is None else value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _predicate(op: str, expected: Any) -> Callable[[Any], bool]:
    if op == "exists":
        return lambda v: (v is not _MISSING) == expected
    if op == "eq":
        return lambda v: v is not _MISSING and (v == expected or str(v) == str(expected))
    if op == "ne":
        return lambda v: v is _MISSING or not (v == expected or str(v) == str(expected))
    if op in ("in", "not_in"):
        allowed = {str(x) for x in expected}
        inside: Callable[[Any], bool] = lambda v: v is not _MISSING and str(v) in allowed  # noqa: E731
        return inside if op == "in" else (lambda v: not inside(v))
    if op == "regex":
        pattern = re.compile(expected)
        return lambda v: v is not _MISSING and pattern.search(str(v)) is not None
    bound = float(expected)
    compare: Callable[[float], bool] = {
        "gt": lambda n: n > bound,
        "gte": lambda n: n >= bound,
        "lt": lambda n: n < bound,
        "lte": lambda n: n <= bound,
    }[op]

    def numeric(v: Any) -> bool:
        n = _number(v) if v is not _MISSING else None
        return n is not None and compare(n)

    return numeric


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    field: str
    op: str
    expected: Any
    read: Callable[[ChatRequest, Mapping[str, str], int], Any]
    test: Callable[[Any], bool]

    @classmethod
    def compile(cls, condition: Condition) -> CompiledCondition:
        op, expected = condition.operator
        return cls(
            condition.field, op, expected, _getter(condition.field), _predicate(op, expected)
        )

    def holds(self, request: ChatRequest, headers: Mapping[str, str], prompt_tokens: int) -> bool:
        return self.test(self.read(request, headers, prompt_tokens))

    def describe(self) -> str:
        return f"{self.field} {self.op} {self.expected!r}"


_NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class Matcher:
    """A route's ``match`` block, compiled. Every condition given must hold."""

    model: PatternSet | None
    user: PatternSet | None
    metadata: tuple[tuple[str, PatternSet], ...]
    headers: tuple[tuple[str, PatternSet], ...]
    conditions: tuple[CompiledCondition, ...] = ()

    @classmethod
    def compile(cls, match: Match) -> Matcher:
        return cls(
            model=PatternSet.compile(match.model) if match.model else None,
            user=PatternSet.compile(match.user) if match.user else None,
            metadata=tuple((k, PatternSet.compile(v)) for k, v in match.metadata.items()),
            headers=tuple((k.lower(), PatternSet.compile(v)) for k, v in match.headers.items()),
            conditions=tuple(CompiledCondition.compile(c) for c in match.when),
        )

    @property
    def conditional(self) -> bool:
        """True if anything beyond the model name decides the match."""
        return bool(self.user or self.metadata or self.headers or self.conditions)

    def matches(
        self,
        request: ChatRequest,
        headers: Mapping[str, str] | None = None,
        prompt_tokens: int = 0,
    ) -> bool:
        if self.model is not None and not self.model.matches(request.model):
            return False
        if self.user is not None and not self.user.matches(request.user):
            return False
        if self.metadata:
            metadata = request.metadata or {}
            for key, patterns in self.metadata:
                if not patterns.matches(metadata.get(key)):
                    return False
        headers = headers or _NO_HEADERS
        for name, patterns in self.headers:
            if not patterns.matches(headers.get(name)):
                return False
        return all(c.holds(request, headers, prompt_tokens) for c in self.conditions)

    def shadows(self, other: Matcher) -> bool:
        """Whether this matcher, placed earlier, matches everything ``other`` does."""
        if self.conditional:
            return False
        if self.model is None:
            return True
        if other.model is None:
            return False
        return all(
            any(covers(mine, theirs) for mine in self.model.patterns)
            for theirs in other.model.patterns
        )

    def describe(self) -> str:
        parts = []
        if self.model is not None:
            parts.append("model " + " | ".join(self.model.patterns))
        if self.user is not None:
            parts.append("user " + " | ".join(self.user.patterns))
        parts += [f"metadata.{k} " + " | ".join(p.patterns) for k, p in self.metadata]
        parts += [f"header {k} " + " | ".join(p.patterns) for k, p in self.headers]
        parts += [c.describe() for c in self.conditions]
        return ", ".join(parts) or "any request"
