"""``deny``: regular expressions and keyword lists a route refuses (or redacts)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from turnout import Finding, Guardrail
from turnout.plugins.guardrails.redact import without_overlaps

__all__ = ["Deny"]


class DenyOptions(BaseModel):
    """``patterns`` are Python regexes; ``keywords`` match whole words, any case."""

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
        return patterns

    @model_validator(mode="after")
    def _something(self) -> DenyOptions:
        if not self.patterns and not [k for k in self.keywords if k.strip()]:
            raise ValueError("deny needs patterns or keywords")
        return self


class Deny(Guardrail):
    Options = DenyOptions
    default_action = "block"

    def __init__(self, options: DenyOptions) -> None:
        super().__init__(options)
        self._patterns = [re.compile(p) for p in options.patterns]
        words = [re.escape(k.strip()) for k in options.keywords if k.strip()]
        if words:
            self._patterns.append(
                re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE)
            )
        self._kind = options.kind

    def scan(self, text: str) -> list[Finding]:
        found = [
            Finding(self._kind, m.start(), m.end())
            for pattern in self._patterns
            for m in pattern.finditer(text)
            if m.end() > m.start()
        ]
        return without_overlaps(found) if len(self._patterns) > 1 else found
