"""Route matching: compiled once per policy, a pure function per request."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .policy import Match

__all__ = ["Matcher", "PatternSet", "covers"]

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


@dataclass(frozen=True, slots=True)
class Matcher:
    """A route's ``match`` block, compiled. Every condition given must hold."""

    model: PatternSet | None
    user: PatternSet | None
    metadata: tuple[tuple[str, PatternSet], ...]
    headers: tuple[tuple[str, PatternSet], ...]

    @classmethod
    def compile(cls, match: Match) -> Matcher:
        return cls(
            model=PatternSet.compile(match.model) if match.model else None,
            user=PatternSet.compile(match.user) if match.user else None,
            metadata=tuple((k, PatternSet.compile(v)) for k, v in match.metadata.items()),
            headers=tuple((k.lower(), PatternSet.compile(v)) for k, v in match.headers.items()),
        )

    @property
    def conditional(self) -> bool:
        """True if anything beyond the model name decides the match."""
        return bool(self.user or self.metadata or self.headers)

    def matches(
        self,
        model: str,
        user: str | None,
        metadata: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> bool:
        if self.model is not None and not self.model.matches(model):
            return False
        if self.user is not None and not self.user.matches(user):
            return False
        for key, patterns in self.metadata:
            if not patterns.matches((metadata or {}).get(key)):
                return False
        return all(patterns.matches((headers or {}).get(name)) for name, patterns in self.headers)

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
        return ", ".join(parts) or "any request"
