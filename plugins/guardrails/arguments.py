"""Redacting inside tool-call arguments without breaking their JSON.

Arguments are scanned as the JSON text the model wrote, so a complete
response and a stream (whose arguments arrive in pieces) see the same text.
A finding is rewritten in place only where its placeholder keeps the JSON
what it was:

- inside one string literal (a key or a value): the span grows to whole
  escape sequences and becomes the placeholder (``"[EMAIL_1]"``);
- over a number (a card number written as a number): the whole number becomes
  the placeholder as a string (``"[CREDIT_CARD_1]"``).

Any other finding (one that spans quotes or a ``:``, or lies in ``true``) is
returned as unsafe, and the guardrail blocks instead of redacting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from turnout import Finding

__all__ = ["redact_arguments", "string_spans"]

_BODY = re.compile(r'(?:[^"\\]|\\.)*', re.DOTALL)
_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{0,4}|.)?", re.DOTALL)
_NUMBER = frozenset("-+.eE0123456789")


def string_spans(text: str) -> list[tuple[int, int]]:
    """The contents (quotes excluded) of the string literals of a JSON text, or
    of the start of one: an unterminated last literal runs to the end."""
    spans: list[tuple[int, int]] = []
    at = text.find('"')
    while at >= 0:
        end = _BODY.match(text, at + 1).end()  # type: ignore[union-attr]
        if end >= len(text) or text[end] != '"':
            spans.append((at + 1, len(text)))
            break
        spans.append((at + 1, end))
        at = text.find('"', end + 1)
    return spans


def _in_string(
    text: str, start: int, end: int, spans: list[tuple[int, int]]
) -> tuple[int, int] | None:
    """``start``-``end`` grown to whole escape sequences, if one literal holds it."""
    for a, b in spans:
        if a <= start and end <= b:
            if "\\" in text[a:b]:
                for m in _ESCAPE.finditer(text, a, b):
                    if m.start() < start < m.end():
                        start = m.start()
                    if m.start() < end < m.end():
                        end = m.end()
            return start, end
        if a > start:
            break
    return None


def _number(text: str, start: int, end: int, complete: bool) -> tuple[int, int] | None:
    """The number holding ``start``-``end``, if that is all it lies in."""
    if not all(c in _NUMBER for c in text[start:end]):
        return None
    while start > 0 and text[start - 1] in _NUMBER:
        start -= 1
    while end < len(text) and text[end] in _NUMBER:
        end += 1
    if text[start] not in "-0123456789" or (end == len(text) and not complete):
        return None
    return start, end


def redact_arguments(
    text: str,
    findings: list[Finding],
    placeholder: Callable[[str, str], str],
    *,
    start: int = 0,
    complete: bool = True,
) -> tuple[str, list[Finding]]:
    """``text[start:]`` with each finding (offsets into it, in order, no
    overlaps) replaced, and the findings that could not be replaced safely.

    :param text: the arguments so far; what precedes ``start`` has been sent
        already and is read only to know where the string literals are.
    :param placeholder: ``(kind, value) -> placeholder``.
    :param complete: ``text`` is all of the arguments (not the head of a stream).
    """
    spans = string_spans(text)
    out: list[str] = []
    unsafe: list[Finding] = []
    at = start
    for finding in findings:
        lo, hi = finding.start + start, finding.end + start
        value = text[lo:hi]
        where = _in_string(text, lo, hi, spans)
        quote = ""
        if where is None:
            where, quote = _number(text, lo, hi, complete), '"'
        if where is None or where[0] < at:
            unsafe.append(finding)
            continue
        out += (text[at : where[0]], quote, placeholder(finding.kind, value), quote)
        at = where[1]
    out.append(text[at:])
    redacted = "".join(out)
    if complete and start == 0 and redacted != text and not _still_valid(text, redacted):
        return text, findings
    return redacted, unsafe


def _still_valid(before: str, after: str) -> bool:
    """Not made invalid: ``after`` parses if ``before`` did."""
    try:
        json.loads(before)
    except ValueError:
        return True
    try:
        json.loads(after)
    except ValueError:
        return False
    return True
