"""``pii``: emails, phone numbers, credit cards (Luhn-checked), IBANs (mod-97
checked), US social security numbers and IP addresses.

Detectors favour precision: card numbers must pass the Luhn check, IBANs the
ISO 13616 checksum, IPs must parse, SSNs must be written ``AAA-GG-SSSS`` with
a valid area, and phone numbers need a ``+`` country code or separators.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from turnout import Finding, Guardrail
from turnout.plugins.guardrails.redact import without_overlaps

__all__ = ["KINDS", "Pii", "iban_valid", "luhn_valid"]

Kind = Literal["credit_card", "iban", "ssn", "email", "ip_address", "phone"]
KINDS: tuple[Kind, ...] = ("credit_card", "iban", "ssn", "email", "ip_address", "phone")
"""In priority order: where two overlap, the earlier kind wins."""


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits holds."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 is 1."""
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?!\d|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?![\w])"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)


_NUMBER_RUN = re.compile(r"\d(?:[ .()+-]?\d){6}|\d{1,3}\.\d{1,3}\.")
"""Seven digits, possibly separated (cards, phones, SSNs, IBANs), or the start of an IPv4."""


def _cards(text: str) -> list[Finding]:
    out = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            out.append(Finding("CREDIT_CARD", m.start(), m.end()))
    return out


def _ibans(text: str) -> list[Finding]:
    return [
        Finding("IBAN", m.start(), m.end())
        for m in _IBAN.finditer(text)
        if iban_valid(m.group().replace(" ", ""))
    ]


def _ips(text: str) -> list[Finding]:
    out = [Finding("IP_ADDRESS", m.start(), m.end()) for m in _IPV4.finditer(text)]
    for m in _IPV6.finditer(text):
        candidate = m.group()
        if candidate.count(":") < 2 or len(candidate) < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        out.append(Finding("IP_ADDRESS", m.start(), m.end()))
    return out


def _simple(kind: str, pattern: re.Pattern[str]) -> Callable[[str], list[Finding]]:
    def detect(text: str) -> list[Finding]:
        return [Finding(kind, m.start(), m.end()) for m in pattern.finditer(text)]

    return detect


def _phones(text: str) -> list[Finding]:
    out = []
    for m in _PHONE.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if 7 <= digits <= 15:
            out.append(Finding("PHONE", m.start(), m.end()))
    return out


DETECTORS: dict[str, Callable[[str], list[Finding]]] = {
    "credit_card": _cards,
    "iban": _ibans,
    "ssn": _simple("SSN", _SSN),
    "email": _simple("EMAIL", _EMAIL),
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
        numeric = _NUMBER_RUN.search(text) is not None
        found: list[Finding] = []
        for kind, detect in self._detectors:
            if kind == "email":
                if "@" not in text:
                    continue
            elif kind == "ip_address":
                if not numeric and text.count(":") < 2:
                    continue
            elif not numeric:
                continue
            found += detect(text)
        return without_overlaps(found) if found else found
