"""Linear-time pattern matching for guardrails: RE2, with Python's lookarounds.

Callers control the text a guardrail scans, so no scan may backtrack: every
pattern here is compiled by RE2 (google-re2), whose time is linear in the
text. RE2 has no lookarounds, which the detectors need (``(?<![\\w-])sk-...``),
so a pattern is written as three parts:

- ``before``: a class the character before a match must not be in (Python's
  ``(?<![...])``), matched as ``[^...]`` (the text is searched after a NUL,
  so a match at its start has a character before it too);
- ``body``: the finding, group ``m``;
- ``after``: what must follow (Python's ``(?![...])``), matched and consumed.

Consuming the neighbours would hide the next match (``AKIA... AKIA...``
share the space between them), so the search restarts just before the end of
each finding, not after what was consumed: the matches are exactly those of
the Python pattern with lookarounds. Tests check that on generated text
(tests/plugins/guardrails/test_linear.py); benchmarks/bench_guardrails.py
times adversarial text.

Texts are searched as UTF-8 bytes (RE2's own form), encoded once per scan;
offsets are converted back to characters only where something was found.

Class spellings: Python's ``\\w``, ``\\d`` and ``\\s`` match Unicode; RE2's
match ASCII, so patterns here use ``W``, ``D`` and ``S`` below instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import re2

__all__ = ["D", "LinearPattern", "S", "Scanned", "W", "compile_re2"]

W = r"\p{L}\p{N}_"
"""Python's ``\\w`` (letters, digits, underscore), for use inside a class."""
D = r"\p{Nd}"
"""Python's ``\\d`` (Unicode decimal digits)."""
S = "".join(f"\\x{{{c:x}}}" for c in range(0x3001) if chr(c).isspace())
"""Python's ``\\s`` (every character ``str.isspace`` accepts), for use inside a class."""

MAX_MEM = 64 << 20
"""RE2's memory budget per pattern (its default is 8 MiB). Taken only as its
DFA needs states; below what dense text needs, RE2 falls back to its NFA,
linear still but many times slower per match."""


def compile_re2(pattern: str, *, case_sensitive: bool = True) -> re2._Regexp:
    """RE2 compiled from ``pattern``; ``re2.error`` if RE2 cannot take it."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_MEM
    options.case_sensitive = case_sensitive
    return re2.compile(pattern.encode(), options)


class Scanned:
    """One text prepared for scanning: its UTF-8 bytes, encoded once."""

    __slots__ = ("_framed", "ascii", "data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.ascii = text.isascii()
        self.data = text.encode("ascii" if self.ascii else "utf-8")
        self._framed: bytes | None = None

    @property
    def framed(self) -> bytes:
        """``data`` after a NUL: the character before the first one, for ``before``."""
        if self._framed is None:
            self._framed = b"\0" + self.data
        return self._framed


@dataclass(frozen=True, slots=True)
class LinearPattern:
    """A pattern with a one-character lookbehind and lookahead, matched by RE2.

    :param body: the match (group ``m``); other named groups are allowed.
    :param before: characters that may not precede a match (a class body),
        or "" for no condition.
    :param after: a regex that must follow the match and is consumed
        (``(?:[^...]|\\z)``), or "".
    """

    body: str
    before: str = ""
    after: str = ""

    @property
    def regex(self) -> re2._Regexp:
        return _compiled(self, False)

    def found_in(self, scanned: Scanned) -> bool:
        """Whether the pattern matches anywhere in the text."""
        data = scanned.framed if self.before else scanned.data
        return _compiled(self, scanned.ascii).search(data) is not None

    def spans(
        self, scanned: Scanned, group: str = "m", *, overlapping: bool = False
    ) -> Iterator[tuple[int, int]]:
        """Character offsets of ``group`` in each match, in text order.

        :param overlapping: find the match at every start where there is one
            (for short patterns), not only those after the previous match.
        """
        regex = _compiled(self, scanned.ascii)
        main = regex.groupindex.get(b"m", 0)
        wanted = main if group == "m" else regex.groupindex[group.encode()]
        # RE2's own Match (what re2.search calls): one call per match, no
        # per-call wrapper objects, as dense text has a candidate every few bytes
        match = regex._regexp.Match
        step_back = bool(self.before)
        data = scanned.framed if step_back else scanned.data
        size = len(data)
        pos = 0
        byte_at, char_at = 0, 0
        while pos <= size:
            spans = match(_UNANCHORED, data, pos, size)
            start, end = spans[main]
            if start < 0:
                return
            if end == start:  # an empty match: move on one character
                pos = start + 1
                while pos < size and data[pos] & 0xC0 == 0x80:
                    pos += 1
                continue
            pos = end
            if overlapping:
                pos = start + 1
                while pos < size and data[pos] & 0xC0 == 0x80:
                    pos += 1
            elif step_back:  # the last character of this match is the next one's "before"
                pos -= 1
                while data[pos] & 0xC0 == 0x80:
                    pos -= 1
            a, b = spans[wanted]
            if step_back:
                a, b = a - 1, b - 1
            if scanned.ascii:
                yield a, b
                continue
            text = scanned.data
            char_at += len(text[byte_at:a].decode())
            byte_at = a
            yield char_at, char_at + len(text[a:b].decode())


_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_cache: dict[tuple[LinearPattern, bool], re2._Regexp] = {}
_ASCII = {W: "A-Za-z0-9_", D: "0-9", S: "\\t\\n\\x0b\\f\\r\\x1c-\\x1f "}


def _compiled(pattern: LinearPattern, ascii: bool) -> re2._Regexp:
    """The RE2 form; for ASCII text, with ASCII classes (the same matches there,
    and RE2 runs them faster than its Unicode classes)."""
    found = _cache.get((pattern, ascii))
    if found is None:
        head = f"[^{pattern.before}]" if pattern.before else ""
        # a bare body is group 0: RE2 then needs no submatch pass, only its DFAs
        framed = head or pattern.after
        source = f"{head}(?P<m>{pattern.body}){pattern.after}" if framed else pattern.body
        if ascii:
            for unicode, narrow in _ASCII.items():
                source = source.replace(unicode, narrow)
        found = _cache[(pattern, ascii)] = compile_re2(source)
    return found
