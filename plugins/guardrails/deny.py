"""``deny``: regular expressions and keyword lists a route refuses (or redacts).

``patterns`` are RE2 regular expressions (the syntax of Python's ``re``
without lookarounds and backreferences), so scanning a caller's text takes
time linear in its length whatever the pattern. A pattern RE2 cannot take is
a policy error, at its line in routes.yaml, naming what to change. RE2's
``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII; write ``\\p{Nd}``, ``\\p{L}``
for Unicode classes.
"""

from __future__ import annotations

import re

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from turnout import Finding, Guardrail
from turnout.plugins.guardrails.linear import LinearPattern, Scanned, W, compile_re2
from turnout.plugins.guardrails.redact import without_overlaps

__all__ = ["Deny"]


class DenyOptions(BaseModel):
    """``patterns`` are RE2 regexes; ``keywords`` match whole words, any case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patterns: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    kind: str = Field("DENIED", pattern=r"^[A-Z][A-Z0-9_]*$", description="placeholder name")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
            try:
                compile_re2(f"(?P<m>{pattern})")
            except re2.error as exc:
                why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
                raise ValueError(
                    f"pattern {pattern!r} is not an RE2 regex ({why}): deny patterns run in "
                    "linear time, so lookarounds ((?=, (?!, (?<=, (?<!) and backreferences "
                    "(\\1) are not available; match the context instead, or use keywords"
                ) from None
        return patterns

    @model_validator(mode="after")
    def _something(self) -> DenyOptions:
        if not self.patterns and not [k for k in self.keywords if k.strip()]:
            raise ValueError("deny needs patterns or keywords")
        return self


def _literal(word: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else f"\\x{{{ord(c):x}}}" for c in word)


class Deny(Guardrail):
    Options = DenyOptions
    default_action = "block"

    def __init__(self, options: DenyOptions) -> None:
        super().__init__(options)
        self._patterns = [LinearPattern(p) for p in options.patterns]
        words = [_literal(k.strip()) for k in options.keywords if k.strip()]
        if words:
            # whole words: neither neighbour is a letter, digit or underscore
            body = "(?i:" + "|".join(words) + ")"
            self._patterns.append(LinearPattern(body, before=W, after=f"(?:[^{W}]|\\z)"))
        self._kind = options.kind

    def scan(self, text: str) -> list[Finding]:
        scanned = Scanned(text)
        found = [
            Finding(self._kind, start, end)
            for pattern in self._patterns
            for start, end in pattern.spans(scanned)
        ]
        return without_overlaps(found) if len(self._patterns) > 1 else found
