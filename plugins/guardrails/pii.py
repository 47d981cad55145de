"""``pii``: emails, phone numbers, credit cards (Luhn-checked), IBANs (mod-97
checked), US social security numbers and IP addresses.

Detectors favour precision: card numbers must pass the Luhn check, IBANs the
ISO 13616 checksum, IPs must parse, SSNs must be written ``AAA-GG-SSSS`` with
a valid area, and phone numbers need a ``+`` country code or separators.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from turnout import Finding, Guardrail
from turnout.plugins.guardrails.linear import D, LinearPattern, Scanned, W
from turnout.plugins.guardrails.redact import without_overlaps

__all__ = ["KINDS", "REFERENCE", "Pii", "iban_valid", "luhn_valid"]

Kind = Literal["credit_card", "iban", "ssn", "email", "ip_address", "phone"]
KINDS: tuple[Kind, ...] = ("credit_card", "iban", "ssn", "email", "ip_address", "phone")
"""In priority order: where two overlap, the earlier kind wins."""


_DOUBLED = str.maketrans("0123456789", "0246813579")
"""A digit doubled, its digits summed (Luhn's step)."""


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of (decimal) digits holds."""
    if not digits.isascii():
        digits = "".join(str(int(c)) for c in digits)
    summed = (digits[-1::-2] + digits[-2::-2].translate(_DOUBLED)).encode()
    return (sum(summed) - 48 * len(summed)) % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 is 1."""
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


REFERENCE: dict[str, str] = {
    "email": r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])",
    "credit_card": r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
    "ssn": r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])",
    "ipv4": r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)",
    "ipv6": r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])",
    "phone": r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?"
    r"\d{3,4}(?![\w])|(?<![\w+])\+\d{8,15}(?!\w)",
}
"""The candidates of each kind as Python regexes: the meaning of the RE2 forms
below (a test holds them equal on generated text); never run on request text."""

_OCTET = f"(?:25[0-5]|2[0-4][{D}]|1[{D}][{D}]|[1-9]?[{D}])"
_EMAIL = LinearPattern(
    r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}",
    before=f"{W}.+-",
    after=f"(?:[^{W}-]|\\z)",
)
_CARD = LinearPattern(f"[{D}](?:[ -]?[{D}]){{12,18}}", before=f"{D}-", after=f"(?:[^{D}-]|\\z)")
_DIGIT_RUN = LinearPattern(f"[{D}](?:[ -]?[{D}]){{12,}}")
"""Thirteen digits or more, each pair separated by at most one space or dash: where
``_CARD`` matches are (one search per run, where ``_CARD`` took one per match)."""
_IBAN = LinearPattern(
    f"[A-Z]{{2}}[{D}]{{2}}(?: ?[A-Z0-9]){{11,30}}", before=W, after=f"(?:[^{W}]|\\z)"
)
_SSN = LinearPattern(f"[{D}]{{3}}-[{D}]{{2}}-[{D}]{{4}}", before=f"{D}-", after=f"(?:[^{D}-]|\\z)")
_IPV4 = LinearPattern(
    f"(?:{_OCTET}\\.){{3}}{_OCTET}", before=f"{D}.", after=f"(?:\\z|[^{D}.]|\\.(?:\\z|[^{D}]))"
)
_IPV6 = LinearPattern(
    r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}", before=f"{W}:.", after=f"(?:[^{W}:]|\\z)"
)
_PHONE = LinearPattern(
    f"(?:\\+[{D}]{{1,3}}[ .-]?)?(?:\\([{D}]{{2,4}}\\)[ .-]?|[{D}]{{2,4}}[ .-])[{D}]{{3,4}}[ .-]?"
    f"[{D}]{{3,4}}|\\+[{D}]{{8,15}}",
    before=f"{W}+",
    after=f"(?:[^{W}]|\\z)",
)
_NUMBER_RUN = LinearPattern(f"[{D}](?:[ .()+-]?[{D}]){{6}}|[{D}]{{1,3}}\\.[{D}]{{1,3}}\\.")
"""Seven digits, possibly separated (cards, phones, SSNs, IBANs), or the start of an IPv4."""


def _cards(scanned: Scanned) -> list[Finding]:
    text = scanned.text
    out: list[Finding] = []
    for start, end in _DIGIT_RUN.spans(scanned):
        out += _cards_in_run(text, start, end)
    return out


class _AsciiDigits(dict[int, int]):
    """A ``str.translate`` table: each decimal digit to its ASCII digit, the
    separators to themselves (built as digits are met: there are hundreds)."""

    def __missing__(self, char: int) -> int:
        self[char] = ord(str(unicodedata.decimal(chr(char), 0)))
        return self[char]


_TO_ASCII = _AsciiDigits({ord(" "): ord(" "), ord("-"): ord("-")})
_TO_ZERO = str.maketrans("123456789", "000000000")
_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED_VALUE = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


def _cards_in_run(text: str, start: int, end: int) -> list[Finding]:
    """The cards (``REFERENCE["credit_card"]``, Luhn-checked) in the run
    ``text[start:end]`` of ``_DIGIT_RUN``, found in time linear in the run.

    A card starts at a digit after a space (or at the run's start, unless a
    dash precedes the run) and ends at a digit before a space (or the run's
    end, unless a dash follows): between spaces, the run's groups. From each
    start the card is the longest stretch of groups with 13 to 19 digits; the
    next start is after it. Each digit's Luhn weight depends only on whether
    its distance to the card's last digit is even, so two weighted copies of
    the run's digits, one per parity, make each card's checksum one sum.
    """
    run = text[start:end]
    start_ok = not start or text[start - 1] != "-"
    end_ok = end == len(text) or text[end] != "-"
    if len(run) <= 37 and start_ok and end_ok:  # at most 19 digits: the run is the card
        digits = run.replace(" ", "").replace("-", "")
        if len(digits) <= 19:
            return [Finding("CREDIT_CARD", start, end)] if luhn_valid(digits) else []
    elif len(run) > 256 and not _CARD.found_in(Scanned(text[start - bool(start) : end + 1])):
        return []  # RE2 skips runs without a candidate faster (a run of 10-digit groups)
    if not run.isascii():
        run = run.translate(_TO_ASCII)
    # one mark per digit: "1" if a space follows it, "2" a dash, "0" neither
    marks = run.translate(_TO_ZERO).replace("0 ", "1").replace("0-", "2")
    digits = run.encode().translate(None, b" -")
    value, doubled = digits.translate(_VALUE), digits.translate(_DOUBLED_VALUE)
    even, odd = bytearray(value), bytearray(doubled)  # weights when the last digit is even, odd
    even[1::2] = doubled[1::2]
    odd[1::2] = value[1::2]
    last = len(digits) - 1
    # from ``tail`` on, the run's last digit ends the longest card
    tail = last - 18 if end_ok else last + 1
    k = 0 if start_ok else marks.find("1") + 1 or last + 1
    rfind, find = marks.rfind, marks.find
    out: list[Finding] = []
    mapped, zeros = 0, 0  # a digit and how many "0" marks precede it
    while k + 12 <= last:
        m = last if k >= tail else rfind("1", k + 12, k + 19)
        if m >= 0:
            if sum((odd if m & 1 else even)[k : m + 1]) % 10 == 0:
                # a digit's offset in the run: itself, plus a separator per marked digit before it
                zeros += marks.count("0", mapped, k)
                first = 2 * k - zeros
                zeros += marks.count("0", k, m)
                mapped = m
                out.append(Finding("CREDIT_CARD", start + first, start + 2 * m - zeros + 1))
            k = m + 1
            continue
        # no card from k, nor from any start before the next end less 18 digits
        after = find("1", k + 19)
        if after < 0:
            if tail > last or last < k + 19:
                break
            after = last
        k = find("1", after - 19) + 1
        if k == 0:
            break
    return out


def _ibans(scanned: Scanned) -> list[Finding]:
    text = scanned.text
    return [
        Finding("IBAN", start, end)
        for start, end in _IBAN.spans(scanned)
        if iban_valid(text[start:end].replace(" ", ""))
    ]


def _ssns(scanned: Scanned) -> list[Finding]:
    text = scanned.text
    out = []
    for start, end in _SSN.spans(scanned):
        area, group, serial = text[start:end].split("-")
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        out.append(Finding("SSN", start, end))
    return out


def _emails(scanned: Scanned) -> list[Finding]:
    return [Finding("EMAIL", start, end) for start, end in _EMAIL.spans(scanned)]


def _ips(scanned: Scanned) -> list[Finding]:
    out = [Finding("IP_ADDRESS", start, end) for start, end in _IPV4.spans(scanned)]
    text = scanned.text
    for start, end in _IPV6.spans(scanned):
        candidate = text[start:end]
        if candidate.count(":") < 2 or len(candidate) < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        out.append(Finding("IP_ADDRESS", start, end))
    return out


def _phones(scanned: Scanned) -> list[Finding]:
    out = []
    text = scanned.text
    for start, end in _PHONE.spans(scanned):
        digits = sum(c.isdigit() for c in text[start:end])
        if 7 <= digits <= 15:
            out.append(Finding("PHONE", start, end))
    return out


DETECTORS: dict[str, Callable[[Scanned], list[Finding]]] = {
    "credit_card": _cards,
    "iban": _ibans,
    "ssn": _ssns,
    "email": _emails,
    "ip_address": _ips,
    "phone": _phones,
}


class PiiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[Kind] = Field(default_factory=lambda: list(KINDS), min_length=1)


class Pii(Guardrail):
    """Personal data; redacted by default."""

    Options = PiiOptions
    default_action = "redact"

    def __init__(self, options: PiiOptions | None = None) -> None:
        super().__init__(options or PiiOptions())
        chosen = set(self.options.kinds)
        self._detectors = [(k, DETECTORS[k]) for k in KINDS if k in chosen]

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 6:
            return []
        # cheap prefilters: most text has no run of digits and no "@"
        scanned = Scanned(text)
        numeric = _NUMBER_RUN.found_in(scanned)
        found: list[Finding] = []
        kinds_found = 0
        for kind, detect in self._detectors:
            if kind == "email":
                if "@" not in text:
                    continue
            elif kind == "ip_address":
                if not numeric and text.count(":") < 2:
                    continue
            elif not numeric:
                continue
            before = len(found)
            found += detect(scanned)
            if len(found) > before:
                # IPv4 then IPv6 findings, which can overlap (``::ffff:1.2.3.4``)
                kinds_found += 2 if kind == "ip_address" else 1
        # the other detectors' findings are in text order and disjoint already
        return without_overlaps(found) if kinds_found > 1 else found
