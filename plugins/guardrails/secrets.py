"""``secrets``: API keys and tokens of common vendors, private keys and JWTs.

Patterns follow each vendor's documented key format. An AWS secret access key
is 40 characters with no prefix of its own, so it is found by its label
(``aws_secret_access_key = ...``, ``AWS secret: ...``) and only the value is
reported; access key ids (``AKIA...``) are found on their own.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from turnout import Finding, Guardrail
from turnout.plugins.guardrails.redact import without_overlaps

__all__ = ["PATTERNS", "Secrets"]

Kind = Literal[
    "private_key",
    "anthropic_api_key",
    "openai_api_key",
    "aws_access_key_id",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "slack_webhook",
    "google_api_key",
    "stripe_key",
    "jwt",
]

PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(
        r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----)?"
    ),
    "anthropic_api_key": re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}"),
    "openai_api_key": re.compile(r"(?<![\w-])sk-(?!ant-)(?:[A-Za-z0-9]+-)?[A-Za-z0-9_-]{20,}"),
    "aws_access_key_id": re.compile(
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"
    ),
    "aws_secret_key": re.compile(
        r"(?i:aws|secret.?access)[\w .-]{0,30}?(?i:secret|key)[\"']?\s*(?:[:=]|is\b)?\s*[\"']?"
        r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
    ),
    "github_token": re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
    ),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "slack_webhook": re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])"),
    "stripe_key": re.compile(r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
}


_MARKERS: dict[str, tuple[str, ...]] = {
    "private_key": ("PRIVATE KEY",),
    "anthropic_api_key": ("sk-ant-",),
    "openai_api_key": ("sk-",),
    "aws_access_key_id": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "aws_secret_key": ("aws", "secret"),  # matched on the lower-cased text
    "github_token": ("gh", "github_pat_"),
    "slack_token": ("xox",),
    "slack_webhook": ("hooks.slack.com",),
    "google_api_key": ("AIza",),
    "stripe_key": ("_live_",),
    "jwt": ("eyJ",),
}
"""A literal every match contains: a substring test (fast) before the regex (slower)."""


class SecretsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[Kind] = Field(default_factory=lambda: list(PATTERNS), min_length=1)  # type: ignore[arg-type]


class Secrets(Guardrail):
    """Credentials; blocked by default (a leaked key must be revoked, not just hidden)."""

    Options = SecretsOptions
    default_action = "block"

    def __init__(self, options: SecretsOptions | None = None) -> None:
        super().__init__(options or SecretsOptions())
        chosen = set(self.options.kinds)
        self._patterns = [
            (k.upper(), p, _MARKERS[k], k == "aws_secret_key")
            for k, p in PATTERNS.items()
            if k in chosen
        ]

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 16:
            return []
        lower = None
        found: list[Finding] = []
        for kind, pattern, markers, folded in self._patterns:
            haystack = text
            if folded:
                haystack = lower = lower if lower is not None else text.lower()
            if not any(m in haystack for m in markers):
                continue
            for m in pattern.finditer(text):
                if "value" in pattern.groupindex:
                    found.append(Finding(kind, m.start("value"), m.end("value")))
                else:
                    found.append(Finding(kind, m.start(), m.end()))
        return without_overlaps(found) if found else found
