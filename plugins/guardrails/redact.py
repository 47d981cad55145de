"""Rewriting findings as stable placeholders: ``[EMAIL_1]``, ``[CREDIT_CARD_2]``.

Within one request a value always gets the same placeholder, in the input and
in the output alike, numbered per kind in order of first appearance. The
numbers carry nothing of the value (no hash to brute-force a phone number
from), and the same request always redacts to the same text, so redacted
requests still hit the response cache.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from turnout import Finding

__all__ = ["Redactor", "without_overlaps"]


def without_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in text order, dropping any that overlaps one found earlier in
    ``findings`` (so detectors listed first win). O(n log n): the kept findings
    are disjoint, so only a neighbour can overlap a new one."""
    kept: list[Finding] = []
    starts: list[int] = []
    for finding in findings:
        start, end = finding.start, finding.end
        if end <= start:
            continue
        i = bisect_right(starts, start)
        if (i and kept[i - 1].end > start) or (i < len(kept) and starts[i] < end):
            continue
        kept.insert(i, finding)
        starts.insert(i, start)
    return kept


class Redactor:
    """The placeholders of one request."""

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        found = self._placeholders.get(key)
        if found is None:
            n = self._counts[kind] = self._counts.get(kind, 0) + 1
            found = self._placeholders[key] = f"[{kind}_{n}]"
        return found

    def redact(self, text: str, findings: list[Finding]) -> str:
        """``text`` with each finding (in text order, no overlaps) replaced."""
        out: list[str] = []
        at = 0
        for finding in findings:
            out.append(text[at : finding.start])
            out.append(self.placeholder(finding.kind, text[finding.start : finding.end]))
            at = finding.end
        out.append(text[at:])
        return "".join(out)
