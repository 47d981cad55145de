"""``secrets``: API keys and tokens of common vendors, private keys and JWTs.

Patterns follow each vendor's documented key format. An AWS secret access key
is 40 characters with no prefix of its own, so it is found by its label
(``aws_secret_access_key = ...``, ``AWS secret: ...``) and only the value is
reported; access key ids (``AKIA...``) are found on their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from turnout import Finding, Guardrail
from turnout.plugins.guardrails.linear import LinearPattern, S, Scanned, W
from turnout.plugins.guardrails.redact import without_overlaps

__all__ = ["PATTERNS", "REFERENCE", "Secrets"]

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

REFERENCE: dict[str, str] = {
    "private_key": r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]*?-----END[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----)?",
    "anthropic_api_key": r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}",
    "openai_api_key": r"(?<![\w-])sk-(?!ant-)(?:[A-Za-z0-9]+-)?[A-Za-z0-9_-]{20,}",
    "aws_access_key_id": r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
    "aws_secret_key": r"(?i:aws|secret.?access)[\w .-]{0,30}?(?i:secret|key)[\"']?\s*"
    r"(?:[:=]|is\b)?\s*[\"']?(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    "slack_webhook": r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}",
    "google_api_key": r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])",
    "stripe_key": r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}",
    "jwt": r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
}
"""Each kind as a Python regex: the meaning of the RE2 forms below (a test holds
them equal on generated text); never run on request text, as Python's engine
backtracks."""

_KEY_HEADER = r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----"

PATTERNS: dict[str, LinearPattern] = {
    "private_key": LinearPattern(_KEY_HEADER),  # not run: see _private_keys
    "anthropic_api_key": LinearPattern(r"sk-ant-[A-Za-z0-9_-]{20,}", before=f"{W}-"),
    # (?:[A-Za-z0-9]+-)? of the reference adds nothing: the run after it holds it
    "openai_api_key": LinearPattern(r"sk-[A-Za-z0-9_-]{20,}", before=f"{W}-"),
    "aws_access_key_id": LinearPattern(
        r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", before="A-Z0-9", after=r"(?:[^A-Z0-9]|\z)"
    ),
    "aws_secret_key": LinearPattern(
        f"(?i:aws|secret.?access)[{W} .-]{{0,30}}?(?i:secret|key)[\"']?[{S}]*"
        f"(?:[:=]|is\\b)?[{S}]*[\"']?(?P<value>[A-Za-z0-9/+]{{40}})",
        after=r"(?:[^A-Za-z0-9/+=]|\z)",
    ),
    "github_token": LinearPattern(
        r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})", before=W
    ),
    "slack_token": LinearPattern(r"xox[abposr]-[A-Za-z0-9-]{10,}", before=W),
    "slack_webhook": LinearPattern(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
    "google_api_key": LinearPattern(r"AIza[0-9A-Za-z_-]{35}", before=W, after=f"(?:[^{W}-]|\\z)"),
    "stripe_key": LinearPattern(r"(?:sk|rk)_live_[0-9A-Za-z]{20,}", before=W),
    "jwt": LinearPattern(
        r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", before=W
    ),
}
"""The kinds as RE2 patterns (linear time; ``linear.py``)."""

_LABEL = "ABCDEFGHIJKLMNOPQRSTUVWXYZ "


@lru_cache(maxsize=64)
def _is_label(label: str) -> bool:
    """``[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?``: the label of a header or footer."""
    if label.strip(_LABEL):
        return False
    if label.endswith(" PRIVATE KEY BLOCK"):
        return len(label) <= 38
    return label.endswith(" PRIVATE KEY") and len(label) <= 32


def _key_line_end(text: str, at: int) -> int:
    """The end of the header or footer whose label starts at ``at``, past its
    closing ``-----``; -1 if there is none. A label has no ``-``, so it runs to
    the first one: a line has one end at most, found without a regex."""
    dash = text.find("-----", at, at + 43)
    return dash + 5 if dash >= 0 and _is_label(text[at:dash]) else -1


def _first_footer(text: str, at: int) -> tuple[int, int]:
    """Start and end of the first footer starting at or after ``at``; (-1, -1) if none."""
    start = text.find("-----END", at)
    while start >= 0:
        end = _key_line_end(text, start + 8)
        if end >= 0:
            return start, end
        start = text.find("-----END", start + 1)
    return -1, -1


def _private_keys(text: str) -> list[tuple[int, int]]:
    r"""A header, through the first footer after it if there is one: the
    reference's lazy ``[\s\S]*?``. One ``str.find`` per header (a regex search
    per header cost a microsecond, and a text can hold 18,500 of them); the
    footer found is kept for the headers before it, so each part of the text is
    searched for a footer once."""
    out: list[tuple[int, int]] = []
    find = text.find
    # the first footer at or after the last place looked: -2 before looking, -1 if none
    footer_start, footer_end = -2, -2
    at = 0
    while (start := find("-----BEGIN", at)) >= 0:
        end = _key_line_end(text, start + 10)
        if end < 0:
            at = start + 1
            continue
        if footer_start < end and footer_start != -1:
            footer_start, footer_end = _first_footer(text, end)
        if footer_start >= 0:
            end = footer_end
        out.append((start, end))
        at = end
    return out


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
        scanned: Scanned | None = None
        found: list[Finding] = []
        kinds_found = 0
        for kind, pattern, markers, folded in self._patterns:
            haystack = text
            if folded:
                haystack = lower = lower if lower is not None else text.lower()
            if not any(m in haystack for m in markers):
                continue
            if kind == "PRIVATE_KEY":
                spans: Iterable[tuple[int, int]] = _private_keys(text)
            elif kind == "OPENAI_API_KEY":
                scanned = scanned or Scanned(text)
                spans = (s for s in pattern.spans(scanned) if text[s[0] + 3 : s[0] + 7] != "ant-")
            else:
                scanned = scanned or Scanned(text)
                spans = pattern.spans(scanned, "value" if kind == "AWS_SECRET_KEY" else "m")
            before = len(found)
            found += [Finding(kind, a, b) for a, b in spans]
            kinds_found += len(found) > before
        # each kind's findings are in text order and disjoint already
        return without_overlaps(found) if kinds_found > 1 else found
